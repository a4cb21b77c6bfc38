"""The one small protocol through which the door speaks to whoever asked.

The terminal, the dashboard, the API server and the sweep each implement it: the trainer's
progress events, the steps of a cloud launch, warnings (a model close to its shutdown), and
the cost question, which refuses by raising UsageError before anything is uploaded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from tunelab.runs.checks import CostEstimate


@dataclass(frozen=True)
class LaunchStep:
    """One step of a cloud launch: checked, uploading, uploaded, created (or adopted)."""

    name: str
    message: str
    data: dict[str, Any] = field(default_factory=dict)


class Reporter(Protocol):
    def event(self, event: dict[str, Any]) -> None:
        """A local trainer's event (local/recorder.py's vocabulary: progress, messages)."""

    def step(self, step: LaunchStep) -> None:
        """A cloud launch step done."""

    def warn(self, message: str) -> None: ...

    def confirm_cost(self, estimate: CostEstimate) -> None:
        """Accept the estimate, or raise UsageError: then nothing is uploaded or created."""


class Silent:
    """A reporter that shows nothing and accepts every cost: for faces whose user has
    already agreed (a sweep's trials after the sweep's own question, a server's queue).
    `on_event` still gets a local run's events (a sweep's table, a worker's metrics)."""

    def __init__(self, on_event: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.on_event = on_event

    def event(self, event: dict[str, Any]) -> None:
        if self.on_event is not None:
            self.on_event(event)

    def step(self, step: LaunchStep) -> None:
        pass

    def warn(self, message: str) -> None:
        pass

    def confirm_cost(self, estimate: CostEstimate) -> None:
        pass
