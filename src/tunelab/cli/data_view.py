"""Rich rendering of `data check` / `data cost` reports. Only the CLI layer imports this."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table

from tunelab.data.check import CheckReport
from tunelab.data.cost import CostRow

SHOWN = 10  # errors listed before "... and N more"


def show_check(console: Console, report: CheckReport) -> None:
    console.print(summary_table(report))
    console.print(cost_table(report.cost))
    show_warnings(console, report)
    show_verdict(console, report)


def summary_table(report: CheckReport) -> Table:
    table = Table(title=f"Dataset: {report.path}", show_header=False, title_justify="left",
                  box=box.SIMPLE)
    table.add_column(style="bold")
    table.add_column()
    target = report.target
    table.add_row("target", f"{target.provider} / {target.model}")
    table.add_row("tokenizer", report.tokenizer)
    table.add_row("examples", f"{report.examples:,} ({report.valid_examples:,} valid)")
    table.add_row("messages per example", _spread(report.messages))
    table.add_row("tokens per example", _spread(report.tokens["per_example"]))
    table.add_row("assistant tokens", f"{report.tokens['assistant']:,} of "
                  f"{report.tokens['total']:,} in all")
    table.add_row("billing tokens per epoch",
                  f"{report.billing_tokens:,} (each example capped at {target.limit:,})")
    table.add_row("epochs", str(report.epochs))
    return table


def cost_table(rows: list[CostRow]) -> Table:
    table = Table(title="Cost in USD", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                  caption="inference: 1,000 requests shaped like your examples; "
                          "— : no fine-tuning API", caption_justify="left")
    for name in ("provider", "model", "ep", "train tokens", "train $", "infer $/1k"):
        left = name in ("provider", "model")
        table.add_column(name, justify="left" if left else "right", no_wrap=True)
    for row in rows:
        model = row.model.rsplit("/", 1)[-1]
        inference = f"${row.inference_per_1k:,.4f}"
        if row.training_tokens is None:
            table.add_row(row.provider, model, "—", "—", "—", inference)
        else:
            table.add_row(row.provider, model, str(row.epochs), f"{row.training_tokens:,}",
                          f"${row.training_cost:,.4f}", inference)
    return table


def show_warnings(console: Console, report: CheckReport) -> None:
    for code, count in sorted(report.warnings.counts.items()):
        lines = [p.line for p in report.warnings.listed if p.code == code][:5]
        where = ", ".join(str(line) for line in lines) + (", ..." if count > len(lines) else "")
        console.print(f"⚠️  {count:,} × {code}: {_first_message(report, code)} (lines {where})",
                      highlight=False)


def show_verdict(console: Console, report: CheckReport) -> None:
    if report.ok:
        console.print(f"✅ Validation passed: {report.valid_examples:,} training examples",
                      highlight=False)
        return
    total = report.errors.total
    console.print(f"❌ {total:,} error{'s' if total != 1 else ''} in {report.path}",
                  highlight=False)
    ordered = sorted(report.errors.listed, key=lambda p: (p.line is None, p.line or 0, p.code))
    for problem in ordered[:SHOWN]:
        console.print(f"   {problem.render()}", highlight=False, markup=False)
    if total > SHOWN:
        console.print(f"   ... and {total - SHOWN:,} more (use --json for the list)",
                      highlight=False)


def _first_message(report: CheckReport, code: str) -> str:
    return next(p.message for p in report.warnings.listed if p.code == code)


def _spread(stats: dict) -> str:
    return (f"min {stats['min']:,} · mean {stats['mean']:,} · p50 {stats['p50']:,} · "
            f"p95 {stats['p95']:,} · max {stats['max']:,}")
