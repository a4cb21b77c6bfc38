"""Local trials: one after another in this process, on one base model and one dataset.

The base model is loaded and the examples tokenized once (local/warm.py); each trial puts a
fresh LoRA adapter on that base through the door (tunelab.runs), which records it as a job like
any `tunelab train` run, labelled with the sweep. Before the first trial the untrained base
model's validation loss is measured once: the pruning rule's floor and the summary's "how
much did tuning help".

Carrying on: a trial that fails is recorded as failed and the sweep goes on (axolotl's
sweeps do the same). Ctrl-C stops the running trial at a checkpoint and the sweep with it.
A sweep killed outright resumes: finished trials are kept, the interrupted one resumes from
its checkpoint, or starts again when it had none.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from tunelab import runs
from tunelab.config import TrainConfig, resolve_config
from tunelab.errors import TunelabError
from tunelab.local import checkpoints
from tunelab.local.warm import Trial, WarmStart
from tunelab.registry import JobRecord, new_job_id, open_registry
from tunelab.sweep import plan as plans
from tunelab.sweep.board import Board, TrialRow, best_loss, fill_from_job, trial_status
from tunelab.sweep.pruning import MedianRule, validation_curve
from tunelab.sweep.schedule import GridSchedule, TpeSchedule
from tunelab.sweep.space import Range


def trial_config(plan: plans.SweepPlan, params: dict[str, Any]) -> TrainConfig:
    """The base config with a trial's parameters; ConfigError names the flag that set one."""
    return resolve_config(base=plan.base, flags=params)


def check_space(plan: plans.SweepPlan) -> None:
    """Every grid point, or each end of every range, is a valid config: refused now, not
    after hours of earlier trials."""
    space = plan.parsed_space()
    if plan.trials is None:
        for params in GridSchedule(space).points:
            trial_config(plan, params)
        return
    for key, param in space.items():
        if isinstance(param, Range):
            kind = int if param.integer else float
            values: tuple[Any, ...] = (kind(param.low), kind(param.high))
        else:
            values = param.values
        for value in values:
            trial_config(plan, {key: value})


def run(plan: plans.SweepPlan, board: Board, stop: threading.Event, *,
        warm: WarmStart | None = None) -> str:
    """Run the sweep's remaining trials; "finished", "budget" (spent before the last one
    started) or "interrupted" (Ctrl-C). `warm`: an already loaded base and dataset."""
    base = TrainConfig(**plan.base)
    warm = warm or WarmStart.load(base)
    base_validation = warm.base_validation(base)
    board.base_valid_loss = base_validation.loss if base_validation else None
    started = plans.trial_jobs(plan.id)
    schedule = _schedule(plan, started)
    _show_known(board, schedule, started)
    clock = Clock(plan)
    for index, params in schedule:
        job = started.get(index)
        if job is not None and plans.is_done(job):
            continue
        if job is None and clock.over():
            _not_started(board)
            return "budget"
        _run_trial(plan, index, params, job, warm, board, stop)
        row = board.rows[index]
        schedule.tell(index, params, row.best_valid_loss, row.status)
        clock.save()
        if stop.is_set():
            return "interrupted"
    return "finished"


def _schedule(plan: plans.SweepPlan,
              started: dict[int, JobRecord]) -> GridSchedule | TpeSchedule:
    space = plan.parsed_space()
    if plan.trials is None:
        return GridSchedule(space)
    finished = {index: (dict(job.hyperparameters or {}), best_loss(job), trial_status(job))
                for index, job in started.items() if plans.is_done(job)}
    return TpeSchedule(space, plan.trials, int(plan.base.get("seed", 42)), finished, started)


def _show_known(board: Board, schedule: GridSchedule | TpeSchedule,
                started: dict[int, JobRecord]) -> None:
    """Rows for every planned grid point and every trial the registry already has."""
    if isinstance(schedule, GridSchedule):
        for index, params in enumerate(schedule.points):
            board.row(index, params)
    for index, job in started.items():
        row = board.row(index, dict(job.hyperparameters or {}))
        fill_from_job(row, job)
        if not plans.is_done(job):
            row.status = "interrupted"
        row.note = row.note or stop_note(job.id)
    board.changed()


def _not_started(board: Board) -> None:
    for row in board.rows.values():
        if row.status == "pending":
            row.status, row.note = "not started", "--budget-minutes spent"
    board.changed()


def _run_trial(plan: plans.SweepPlan, index: int, params: dict[str, Any],
               job: JobRecord | None, warm: WarmStart, board: Board,
               stop: threading.Event) -> None:
    row = board.row(index, params)
    finished = [validation_curve(other.job_id) for other in board.ordered()
                if other.status == "succeeded" and other.job_id and other is not row]
    trial = Trial(warm, plans.labels(plan.id, index), params,
                  judge=MedianRule(board.base_valid_loss, finished))
    row.status, row.note, row.step = "running", "", 0
    follow = _follower(row, board, time.monotonic() - row.seconds)
    board.changed()
    try:
        if job is not None and _has_checkpoint(job):
            row.job_id = job.id
            runs.resume(job, reporter=runs.Silent(follow), stop=stop, trial=trial)
        else:
            row.job_id, row.best_valid_loss = new_job_id(), None  # shown before it starts
            if job is not None:
                _restarted(job, row.job_id, index)
            runs.start(runs.RunRequest(config=trial_config(plan, params), job_id=row.job_id,
                                       labels=plans.labels(plan.id, index)),
                       runs.Silent(follow), stop=stop, trial=trial)
    except TunelabError as error:  # recorded on the job; the sweep carries on
        row.note = error.render()
    except Exception as error:  # noqa: BLE001 - one broken trial must not end the sweep
        row.note = f"{type(error).__name__}: {error}"
    _settle(row)
    board.changed()


def _settle(row: TrialRow) -> None:
    """The row as the registry has its job now."""
    with open_registry() as registry:
        job = registry.find_job(row.job_id) if row.job_id else None
    if job is None:
        row.status = "failed"
        return
    fill_from_job(row, job)
    row.note = stop_note(job.id) or row.note


def _follower(row: TrialRow, board: Board, began: float) -> Any:
    """The trainer's events into the trial's row: steps, validation losses, time."""
    def on_event(event: dict[str, Any]) -> None:
        if event.get("type") == "step":
            row.step, row.total_steps = event["step"], event["total_steps"]
        elif event.get("type") == "validation":
            loss = event.get("valid_loss")
            if loss is not None and (row.best_valid_loss is None or loss < row.best_valid_loss):
                row.best_valid_loss = loss
        row.seconds = time.monotonic() - began
        board.changed()

    return on_event


def stop_note(job_id: str) -> str:
    """Why a trial stopped before its last step (pruned, stopped early), from its events."""
    with open_registry() as registry:
        events = registry.list_events(job_id)
    notes = [event.message for event in events if (event.data or {}).get("outcome")]
    return notes[-1] if notes else ""


def _has_checkpoint(job: JobRecord) -> bool:
    return bool(job.run_dir) and bool(checkpoints.candidates(Path(job.run_dir) / "checkpoints"))


def _restarted(job: JobRecord, new_id: str, index: int) -> None:
    """A trial killed before its first checkpoint: its job fails, saying where it went on."""
    with open_registry() as registry:
        registry.update_job(job.id, status="failed", native_status="interrupted",
                            error={"code": "interrupted",
                                   "message": f"the sweep was stopped before this trial's "
                                              f"first checkpoint; trial {index} started "
                                              f"again as {new_id}"})


class Clock:
    """The sweep's time, over every process that ran it, against --budget-minutes."""

    def __init__(self, plan: plans.SweepPlan) -> None:
        self.plan = plan
        self.before = float(plans.read_progress(plan).get("spent_s", 0.0))
        self.began = time.monotonic()

    def spent_s(self) -> float:
        return self.before + time.monotonic() - self.began

    def over(self) -> bool:
        budget = self.plan.budget_minutes
        return budget is not None and self.spent_s() >= budget * 60

    def save(self) -> None:
        plans.write_progress(self.plan, spent_s=round(self.spent_s(), 1))
