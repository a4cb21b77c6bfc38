"""Cloud trials: the whole grid priced and confirmed first, the jobs created together and
watched together, through the door (tunelab.runs.start_many): the lifecycle gate, the data
check, the cost estimate, one question for the total, one deduplicated upload, and each job
recorded in the registry right after its create.

A cloud sweep is a grid: TPE would pick each trial from the results of the ones before,
which cloud jobs running side by side cannot give. There is no pruning either: the
provider trains, and a job's validation loss arrives when the provider reports it.
On a resume, trials whose jobs exist are not created again; the watch picks them up. That
holds for a job the provider made but the registry never heard of (killed mid-create): the
door adopts a job the provider has with the trial's labels instead of creating it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from tunelab.errors import UsageError
from tunelab.providers import cloud_training, get_provider
from tunelab.providers.base import Provider
from tunelab.registry import open_registry
from tunelab.runs import Intent, LaunchStep, RunRequest, Silent, Target, start_many
from tunelab.runs.checks import CostEstimate
from tunelab.sweep import plan as plans
from tunelab.sweep.board import Board, fill_from_job
from tunelab.sweep.schedule import GridSchedule

# The JobSpec fields a cloud sweep may vary (learning_rate is the provider's multiplier).
CLOUD_KEYS = ("epochs", "learning_rate", "batch_size", "seed")


@dataclass
class Quote:
    """What the trials still to create will cost, for the CLI to show and confirm."""

    estimates: list[tuple[int, CostEstimate]]
    total: CostEstimate
    warnings: list[str] = field(default_factory=list)  # the lifecycle gate's, if any


def check_keys(given: list[str]) -> None:
    """Refuse the training settings a cloud job cannot take (LoRA rank, eval_every...)."""
    other = [key for key in given if key not in CLOUD_KEYS]
    if other:
        from tunelab.config import FLAG_NAMES

        raise UsageError(f"{', '.join(FLAG_NAMES[key] for key in other)}: a cloud provider "
                         "does not take this setting",
                         fix="vary --epochs, --learning-rate (the provider's multiplier), "
                             "--batch-size or --seed, or train locally")


def run(plan: plans.SweepPlan, board: Board, target: Target, *,
        confirm: Callable[[Quote], None], wait: bool, interval: float,
        stop: threading.Event, sleep: Callable[[float], None] = time.sleep) -> str:
    """Create the trials' jobs that do not exist yet, then watch them all to their end:
    "finished", "created" (not waiting) or "interrupted"."""
    points = GridSchedule(plan.parsed_space()).points
    started = plans.trial_jobs(plan.id)
    for index, params in enumerate(points):
        row = board.row(index, params)
        if index in started:
            fill_from_job(row, started[index])
    missing = [index for index in range(len(points)) if index not in started]
    if missing:
        made = start_many([_request(plan, target, points[index], index) for index in missing],
                          _SweepReporter(missing, confirm))
        for index, record in zip(missing, made.jobs, strict=True):
            fill_from_job(board.row(index, points[index]), record)
    board.changed()
    if not wait:
        return "created"
    return _watch_all(board, get_provider(target.provider, target.settings), interval, stop,
                      sleep)


def _request(plan: plans.SweepPlan, target: Target, params: dict[str, Any],
             index: int) -> RunRequest:
    """One trial's request: the plan's shared values with the trial's, labelled so that
    `jobs list --sweep` and a resume find it."""
    from tunelab.config import resolve_config

    values = {key: value for key, value in {**plan.base, **params}.items()
              if value is not None}
    # A cloud trial's learning rate is the provider's multiplier (it may pass 1), not a rate.
    multiplier = values.pop("learning_rate", None)
    return RunRequest(config=resolve_config(flags=values),
                      target=replace(target, learning_rate_multiplier=multiplier),
                      labels=plans.labels(plan.id, index),
                      intent=Intent(wait=False, adopt_labelled=True),
                      shown_hyperparameters=params)


class _SweepReporter(Silent):
    """The door's questions for a sweep: its warnings and per-trial estimates gathered, then
    one confirmation of the total through the CLI's `confirm`."""

    def __init__(self, indices: list[int], confirm: Callable[[Quote], None]) -> None:
        super().__init__()
        self.indices, self.confirm = indices, confirm
        self.warnings: list[str] = []
        self.estimates: list[CostEstimate] = []

    def step(self, step: LaunchStep) -> None:
        if step.name == "checked":
            self.estimates = [CostEstimate(**item) for item in step.data["estimates"]]

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def confirm_cost(self, estimate: CostEstimate) -> None:
        self.confirm(Quote(list(zip(self.indices, self.estimates, strict=True)), estimate,
                           self.warnings))  # raises UsageError when the user says no


def _watch_all(board: Board, provider: Provider, interval: float, stop: threading.Event,
               sleep: Callable[[float], None]) -> str:
    """One poll of every unfinished job per round, `interval` seconds between rounds."""
    watches = {row.index: cloud_training.watch(provider, row.job_id, interval=0.0,
                                               sleep=lambda _seconds: None)
               for row in board.ordered() if row.job_id and row.status not in (
                   "succeeded", "failed", "cancelled")}
    while watches:
        for index, watch in list(watches.items()):
            update = next(watch, None)
            if update is not None and update.job is None:
                board.rows[index].note = update.problem or ""
                continue
            with open_registry() as registry:
                fill_from_job(board.rows[index], registry.get_job(board.rows[index].job_id))
            if update is None or update.done:
                del watches[index]
        board.changed()
        if stop.is_set():
            return "interrupted"
        if watches:
            sleep(interval)
    return "finished"
