"""The terminal's Reporter for the door (tunelab.runs): launch steps and warnings on stderr,
the trainer's events to the live progress bar, and the cost question at the prompt.

stdout is left to the command's result, so that with --json it holds one JSON object.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import typer

from tunelab.cli.console import err
from tunelab.errors import UsageError
from tunelab.runs import LaunchStep
from tunelab.runs.checks import CostEstimate


def interactive() -> bool:
    return sys.stdin.isatty() and not os.environ.get("CI")


class TerminalReporter:
    def __init__(self, *, yes: bool = False, max_cost: float | None = None,
                 on_event: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.yes, self.max_cost, self.on_event = yes, max_cost, on_event

    def event(self, event: dict[str, Any]) -> None:
        if self.on_event is not None:
            self.on_event(event)

    def step(self, step: LaunchStep) -> None:
        if step.name == "checked":
            _show_check(step.data)
        elif step.name == "uploading":
            err.print(step.message, style="dim", markup=False)
        else:
            err.print(f"✅ {step.message}", markup=False)

    def warn(self, message: str) -> None:
        err.print(f"⚠️  {message}", markup=False)

    def confirm_cost(self, estimate: CostEstimate) -> None:
        if self.yes or not estimate.needs_confirmation(self.max_cost):
            return
        shown = "unknown" if estimate.dollars is None else f"${estimate.dollars:,.2f}"
        why = (f"over --max-cost ${self.max_cost:,.2f}" if self.max_cost is not None and
               estimate.dollars is not None else "with no --max-cost to compare against")
        if not interactive():
            raise UsageError(f"estimated cost {shown} is {why}, and this is not an interactive "
                             "terminal", fix="pass --yes to accept it, or --max-cost DOLLARS")
        if not typer.confirm(f"Estimated cost {shown} is {why}. Start training?", err=True):
            raise UsageError("training not started", fix="lower --epochs or raise --max-cost")


def _show_check(data: dict[str, Any]) -> None:
    estimate = data["estimate"]
    err.print(f"✅ Validation passed: {data['examples']} training examples")
    if data["warnings"]:
        err.print(f"   {data['warnings']} warning(s): run `tunelab data check` to see them")
    price = "unknown (no training price for this model)" if estimate["dollars"] is None \
        else f"${estimate['dollars']:,.2f}"
    err.print(f"💰 Estimated training cost on {estimate['provider']} {estimate['model']}: "
              f"{price} ({estimate['billed_tokens']:,} tokens × {estimate['epochs']} epochs)")
