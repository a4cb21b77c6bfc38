"""Rich rendering of `data check` / `data cost` reports. Only the CLI layer imports this."""

from __future__ import annotations

from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from tunelab.data.check import CheckReport
from tunelab.data.cost import CostRow
from tunelab.data.lifecycle import days_left, today

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
    pairs = report.format == "preference"
    table.add_row("format", "preference pairs (OpenAI DPO rows): priced for --method dpo"
                  if pairs else "chat examples: priced for supervised fine-tuning")
    table.add_row("target", f"{target.provider} / {target.model}")
    table.add_row("tokenizer", report.tokenizer)
    table.add_row("examples", f"{report.examples:,} ({report.valid_examples:,} valid)")
    table.add_row("input messages per pair" if pairs else "messages per example",
                  _spread(report.messages))
    table.add_row("tokens per pair" if pairs else "tokens per example",
                  _spread(report.tokens["per_example"]))
    if pairs:
        table.add_row("counted as", report.tokens["counted_as"])
    table.add_row("answer tokens" if pairs else "assistant tokens",
                  f"{report.tokens['assistant']:,} of {report.tokens['total']:,} in all")
    cap = ("each input + answer capped at" if pairs else "each example capped at")
    table.add_row("billing tokens per epoch", f"{report.billing_tokens:,} ({cap} {target.limit:,})")
    table.add_row("epochs", str(report.epochs))
    return table


def cost_table(rows: list[CostRow]) -> Group:
    """The price table, then one marked line per shut-down model and per closing deadline.
    DPO rows (a preference file) show only the models that train DPO, "unknown" where no
    source gives their DPO rate."""
    dpo = any(row.method == "dpo" for row in rows)
    caption = ("DPO: only the models that train it; unknown: no source gives its DPO price"
               if dpo else "— : no fine-tuning API")
    table = Table(title="DPO training cost in USD" if dpo else "Cost in USD",
                  title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                  collapse_padding=True,
                  caption="inference: 1,000 requests shaped like your examples; "
                          f"{caption}; days left: until fine-tuning closes / "
                          "until the model shuts down; ✗ : shut down, not offered",
                  caption_justify="left")
    for name in ("provider", "model", "ep", "tokens", "DPO $" if dpo else "train $",
                 "infer $/1k", "days left"):
        left = name in ("provider", "model")
        table.add_column(name, justify="left" if left else "right", no_wrap=True)
    for row in rows:
        if row.status == "shut_down":
            continue  # not a target: listed under the table instead of priced
        model = row.model.rsplit("/", 1)[-1]
        inference = "unknown" if row.inference_per_1k is None \
            else f"${row.inference_per_1k:,.4f}"
        if row.training_tokens is None:
            table.add_row(row.provider, model, "—", "—", "—", inference, _days_left(row))
        else:
            price = "unknown" if row.training_cost is None else f"${row.training_cost:,.4f}"
            table.add_row(row.provider, model, str(row.epochs), f"{row.training_tokens:,}",
                          price, inference, _days_left(row))
    return Group(table, *(Text(line) for line in lifecycle_lines(rows)))


def lifecycle_lines(rows: list[CostRow]) -> list[str]:
    """Plain lines under the table: each shut-down model, each provider's closing day, and
    where the dates come from."""
    lines = [f"✗ {row.model} ({row.provider}): shut down {row.shutdown} with its fine-tunes"
             for row in rows if row.status == "shut_down"]
    dated = [row for row in rows if row.fine_tuning_closes is not None]
    for provider in dict.fromkeys(row.provider for row in dated):
        first = min((row.fine_tuning_closes for row in dated if row.provider == provider
                     and row.status != "shut_down"), default=None)
        if first is not None:
            left = days_left(first, now=today())
            when = f"since {first}" if left <= 0 else f"from {first} ({left} days left)"
            lines.append(f"! {provider}: no new fine-tuning jobs {when}")
    sources = dict.fromkeys(row.lifecycle_source for row in dated if row.lifecycle_source)
    lines += [f"  dates: {source}" for source in sources]
    return lines


def _days_left(row: CostRow) -> str:
    if row.days_to_close is None and row.days_to_shutdown is None:
        return ""
    jobs = "closed" if row.status == "closed" else _count(row.days_to_close)
    return f"{jobs} / {_count(row.days_to_shutdown)}"


def _count(days: int | None) -> str:
    return "—" if days is None else f"{days:,}"


def show_warnings(console: Console, report: CheckReport) -> None:
    for code, count in sorted(report.warnings.counts.items()):
        lines = [p.line for p in report.warnings.listed if p.code == code][:5]
        where = ", ".join(str(line) for line in lines if line is not None) \
            + (", ..." if count > len(lines) else "")
        where = f" (lines {where})" if where else ""  # a warning about the whole file
        console.print(f"⚠️  {count:,} × {code}: {_first_message(report, code)}{where}",
                      highlight=False)


def show_verdict(console: Console, report: CheckReport) -> None:
    if report.ok:
        console.print(f"✅ Validation passed: {report.valid_examples:,} "
                      f"{unit(report)}", highlight=False)
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


def unit(report: CheckReport) -> str:
    """What the file's rows are, plural: training examples or preference pairs."""
    return "preference pairs" if report.format == "preference" else "training examples"


def _first_message(report: CheckReport, code: str) -> str:
    return next(p.message for p in report.warnings.listed if p.code == code)


def _spread(stats: dict) -> str:
    return (f"min {stats['min']:,} · mean {stats['mean']:,} · p50 {stats['p50']:,} · "
            f"p95 {stats['p95']:,} · max {stats['max']:,}")
