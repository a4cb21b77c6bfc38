"""How `tunelab train` looks: the live progress bar and the dry-run report."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn

from tunelab.cli.console import out, styled
from tunelab.cli.formatting import duration, pairs_table
from tunelab.registry.metrics import TOKENS_PER_S, TRAIN_LOSS, accuracy


class TrainProgress:
    """A rich progress bar fed by the trainer's events: step/total, train loss and the
    method's accuracy (token accuracy, or DPO's reward accuracy), tokens/s, ETA. Events
    carry the metric vocabulary's names."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("train", style="bold", markup=False), BarColumn(),
            TextColumn("step {task.completed}/{task.total}"),
            TextColumn("loss {task.fields[loss]}"), TextColumn("acc {task.fields[accuracy]}"),
            TextColumn("{task.fields[speed]} tok/s"),
            TextColumn("ETA {task.fields[eta]}"), console=console, transient=False)
        self.task = None

    def __enter__(self) -> TrainProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def on_event(self, event: dict[str, Any]) -> None:
        if event["type"] == "step":
            share = accuracy(event)
            fields = {"loss": f"{event[TRAIN_LOSS]:.4f}",
                      "accuracy": "-" if share is None else f"{share:.3f}",
                      "speed": f"{event[TOKENS_PER_S]:.0f}", "eta": duration(event["eta_s"])}
            if self.task is None:
                self.task = self.progress.add_task("train", total=event["total_steps"],
                                                   **fields)
            self.progress.update(self.task, completed=event["step"],
                                 total=event["total_steps"], **fields)
        elif event["type"] == "message":
            style = {"warning": "yellow", "error": "red"}.get(event["level"], "dim")
            self.progress.console.print(event["message"], style=style, markup=False,
                                        highlight=False)


def render_dry_run(report: dict[str, Any]) -> None:
    out.print(pairs_table(((key, value) for key, value in report["config"].items()
                           if value is not None), title="resolved config"))
    for role, stats in report["data"].items():
        if role == "warnings":
            out.print("data warnings: " + ", ".join(f"{k} {v}" for k, v in stats.items()))
            continue
        tokens = stats["tokens"]
        out.print(styled((f"{role} data", "bold"), f": {stats['examples']} examples, "
                         f"{stats['trained_on']} trained on, {stats['truncated']} truncated, "
                         f"tokens per example min {tokens['min']} mean {tokens['mean']} p95 "
                         f"{tokens['p95']} max {tokens['max']}, {stats['loss_tokens']} tokens "
                         "carry loss"))
        if stats["dropped_no_loss_tokens"]:
            out.print(f"  dropped (no assistant token left): examples "
                      f"{stats['dropped_no_loss_tokens']}")
    plan = report["plan"]
    out.print(styled(("plan", "bold"), f": {plan['steps_per_epoch']} steps/epoch, "
                     f"{plan['total_steps']} steps in all ({plan['epochs']} epochs, "
                     f"{plan['examples_per_step']} examples per step)"))
    _render_model(report)
    estimate = report.get("estimate")
    if estimate:
        out.print(styled(("estimate", "bold"), f": about {duration(estimate['wall_s'])} at "
                         f"{estimate['tokens_per_s']} tokens/s, peak memory about "
                         f"{estimate['peak_memory_mb']:.0f} MB"))
        out.print(f"  measured: {estimate['method']}")
    out.print("dry run: nothing trained, nothing registered")


def _render_model(report: dict[str, Any]) -> None:
    """The model's facts and the estimate from its config (what a hub model not downloaded
    yet gets instead of timed steps)."""
    model, found = report.get("model"), report.get("estimate_from_config") or {}
    if model:
        size = f"{model['parameters'] / 1e6:,.0f}M parameters" if model["parameters"] else ""
        out.print(styled(("model", "bold"), f": {model['name']} ({model['source']}"
                         + (f", {size}" if size else "") + ")"), markup=False)
    if "total_bytes" in found:
        fits = "fits" if found["fits"] else f"{found['short_by_bytes'] / 1e9:.1f} GB short"
        speed = (f", about {duration(found['seconds_per_epoch'])} per epoch at "
                 f"{found['tokens_per_s']} tokens/s" if found.get("seconds_per_epoch") else "")
        out.print(styled(("from its config", "bold"), f": memory about {found['memory_gb']} GB "
                         f"of {found['machine_gb']} GB on {found['device']} ({fits}){speed}"),
                  markup=False)
