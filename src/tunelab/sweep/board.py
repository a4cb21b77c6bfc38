"""What a sweep shows while it runs: one row per trial, and whoever draws them.

The sweep updates rows as its trials report (steps, validation losses, the end) and calls
`listener(board)` after each change; the CLI draws the board as a live table, `--json`
reads the rows at the end. Nothing here prints.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from tunelab.registry import JobRecord, metrics
from tunelab.sweep.plan import PRUNED
from tunelab.sweep.pruning import validation_curve


@dataclass
class TrialRow:
    index: int
    params: dict[str, Any]
    job_id: str | None = None
    # pending, running, succeeded, pruned, failed, cancelled, or "not started" (budget)
    status: str = "pending"
    best_valid_loss: float | None = None
    step: int = 0
    total_steps: int | None = None
    seconds: float = 0.0
    note: str = ""  # why it was pruned or failed
    fine_tuned_model: str | None = None
    run_dir: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Board:
    sweep_id: str
    provider: str
    mode: str
    rows: dict[int, TrialRow] = field(default_factory=dict)
    base_valid_loss: float | None = None
    listener: Callable[[Board], None] | None = None

    def row(self, index: int, params: dict[str, Any]) -> TrialRow:
        if index not in self.rows:
            self.rows[index] = TrialRow(index, params)
        return self.rows[index]

    def changed(self) -> None:
        if self.listener is not None:
            self.listener(self)

    def ordered(self) -> list[TrialRow]:
        return [self.rows[index] for index in sorted(self.rows)]


def trial_status(job: JobRecord) -> str:
    return PRUNED if job.native_status == PRUNED else job.status


def best_loss(job: JobRecord) -> float | None:
    """A trial's best validation loss: its summary's (local), or the lowest its curve
    reached (a cloud job's metrics arrive as events)."""
    best = (job.metrics or {}).get(metrics.BEST_VALID_LOSS)
    if best is not None:
        return float(best)
    curve = [loss for _, loss in validation_curve(job.id)]
    return min(curve) if curve else None


def fill_from_job(row: TrialRow, job: JobRecord) -> TrialRow:
    """A row as the registry has its job: status, best validation loss, steps, time."""
    values = job.metrics or {}
    row.job_id, row.status = job.id, trial_status(job)
    row.best_valid_loss = best_loss(job)
    row.step = int(values.get(metrics.STEPS) or row.step)
    row.seconds = float(_wall(job) or row.seconds)  # wall time: loading and validating too
    row.fine_tuned_model, row.run_dir = job.fine_tuned_model, job.run_dir
    if job.error and not row.note:
        row.note = str(job.error.get("message", ""))[:200]
    return row


def _wall(job: JobRecord) -> float | None:
    end = job.finished_at or (None if job.is_terminal else time.time())
    return end - job.created_at if end else None
