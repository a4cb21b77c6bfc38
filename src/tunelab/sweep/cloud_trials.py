"""Cloud trials: the whole grid priced and confirmed first, the jobs created together and
watched together, through the provider contract and the cloud path's own steps
(providers/cloud_training.py): the lifecycle gate, the data check, the cost estimate, the
deduplicated upload, the registry row recorded right after each create.

A cloud sweep is a grid: TPE would pick each trial from the results of the ones before,
which cloud jobs running side by side cannot give. There is no pruning either: the
provider trains, and a job's validation loss arrives when the provider reports it.
On a resume, trials whose jobs exist are not created again; the watch picks them up. That
holds for a job the provider made but the registry never heard of (killed mid-create): the
provider's job list is searched for the trial's labels first.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunelab.errors import UsageError
from tunelab.providers import cloud_training
from tunelab.providers.base import Job, JobSpec, Provider
from tunelab.registry import open_registry
from tunelab.sweep import plan as plans
from tunelab.sweep.board import Board, fill_from_job
from tunelab.sweep.schedule import GridSchedule

# The JobSpec fields a cloud sweep may vary (learning_rate is the provider's multiplier).
CLOUD_KEYS = ("epochs", "learning_rate", "batch_size", "seed")


@dataclass(frozen=True)
class Quote:
    """What the trials still to create will cost, for the CLI to show and confirm."""

    estimates: list[tuple[int, cloud_training.CostEstimate]]
    warning: str | None  # the lifecycle gate's, when the model is close to its end

    @property
    def total(self) -> cloud_training.CostEstimate:
        """One estimate for them all: dollars summed (None when any is unknown)."""
        first = self.estimates[0][1]
        dollars = [estimate.dollars for _, estimate in self.estimates]
        return cloud_training.CostEstimate(
            first.provider, first.model, sum(e.epochs for _, e in self.estimates),
            first.billed_tokens, None if None in dollars else sum(d or 0.0 for d in dollars))


def check_keys(given: list[str]) -> None:
    """Refuse the training settings a cloud job cannot take (LoRA rank, eval_every...)."""
    other = [key for key in given if key not in CLOUD_KEYS]
    if other:
        from tunelab.config import FLAG_NAMES

        raise UsageError(f"{', '.join(FLAG_NAMES[key] for key in other)}: a cloud provider "
                         "does not take this setting",
                         fix="vary --epochs, --learning-rate (the provider's multiplier), "
                             "--batch-size or --seed, or train locally")


def run(plan: plans.SweepPlan, board: Board, connect: Callable[[], Provider], *,
        confirm: Callable[[Quote], None], wait: bool, interval: float,
        stop: threading.Event, sleep: Callable[[float], None] = time.sleep) -> str:
    """Create the trials' jobs that do not exist yet, then watch them all to their end:
    "finished", "created" (not waiting) or "interrupted". `connect` builds the provider."""
    points = GridSchedule(plan.parsed_space()).points
    started = plans.trial_jobs(plan.id)
    for index, params in enumerate(points):
        row = board.row(index, params)
        if index in started:
            fill_from_job(row, started[index])
    missing = [index for index in range(len(points)) if index not in started]
    # Refused before any key is read or byte sent, as `tunelab train` does.
    warning = cloud_training.lifecycle_gate(plan.provider, plan.cloud.get("base_url"),
                                            plan.base["model"]) if missing else None
    provider = connect()
    if missing:
        _create_all(plan, board, provider, points, missing, confirm, warning)
    board.changed()
    if not wait:
        return "created"
    return _watch_all(board, provider, interval, stop, sleep)


def _create_all(plan: plans.SweepPlan, board: Board, provider: Provider,
                points: list[dict[str, Any]], missing: list[int],
                confirm: Callable[[Quote], None], warning: str | None) -> None:
    base = plan.base
    model = base["model"]
    live = cloud_training.live_shutdown(provider.name, plan.cloud.get("base_url"), model)
    if live is not None:  # the endpoint's own date wins over the table
        warning = cloud_training.lifecycle_gate(provider.name, plan.cloud.get("base_url"),
                                                model, live_shutdown=live) or warning
    train, validation = Path(base["train_file"]), Path(base["validation_file"])
    report = cloud_training.check_data(train, provider=plan.provider, model=model, epochs=None)
    cloud_training.check_data(validation, provider=plan.provider, model=model, epochs=None,
                              role="--validation-file")
    specs = {index: _spec(plan, points[index], index) for index in missing}
    estimates = {index: cloud_training.estimate_cost(
        report, provider=plan.provider, model=model, epochs=specs[index].epochs)
        for index in missing}
    local_files = {"training_file": str(train.resolve()),
                   "validation_file": str(validation.resolve())}
    for index, job in _created_unrecorded(plan.id, provider, missing).items():
        _record(provider, board, index, job, specs[index], local_files, estimates[index],
                points)
        missing = [other for other in missing if other != index]
    if not missing:
        return
    quote = Quote([(index, estimates[index]) for index in missing], warning)
    confirm(quote)  # raises UsageError when the user says no: nothing is sent
    files = {"training_file": provider.upload(train),
             "validation_file": provider.upload(validation)}
    for index, estimate in quote.estimates:
        sent = JobSpec(**{**specs[index].__dict__, "training_file": files["training_file"].id,
                          "validation_file": files["validation_file"].id})
        _record(provider, board, index, provider.create_job(sent), sent, local_files,
                estimate, points)


def _created_unrecorded(sweep_id: str, provider: Provider, missing: list[int]) -> dict[int, Job]:
    """The trials' jobs the provider already has, by trial: a sweep killed between a
    create and its registry row made them. Found by the labels every trial's job carries
    in its metadata (OpenAI and compatible endpoints; a provider without job metadata
    finds none), so a resume adopts them instead of paying for them twice."""
    wanted = {plans.labels(sweep_id, index)[plans.TRIAL_KEY]: index for index in missing}
    found: dict[int, Job] = {}
    for job in provider.list_jobs(limit=100):
        metadata = job.raw.get("metadata") or {}
        if metadata.get(plans.SWEEP_KEY) == sweep_id and metadata.get(plans.TRIAL_KEY) in wanted:
            found.setdefault(wanted[metadata[plans.TRIAL_KEY]], job)
    return found


def _spec(plan: plans.SweepPlan, params: dict[str, Any], index: int) -> JobSpec:
    values = {**{key: plan.base.get(key) for key in CLOUD_KEYS}, **params}
    return JobSpec(base_model=plan.base["model"], training_file=plan.base["train_file"],
                   validation_file=plan.base["validation_file"], suffix=plan.base.get("suffix"),
                   epochs=values["epochs"], learning_rate=values["learning_rate"],
                   batch_size=values["batch_size"], seed=values["seed"],
                   adapter_size=plan.cloud.get("adapter_size"),
                   metadata=plans.labels(plan.id, index))


def _record(provider: Provider, board: Board, index: int, job: Job, spec: JobSpec,
            local_files: dict[str, str], estimate: cloud_training.CostEstimate,
            points: list[dict[str, Any]]) -> None:
    """The trial's job in the registry, labelled as the sweep finds its trials."""
    cloud_training.record_job(provider, job, local_files=local_files,
                              config=cloud_training.run_config(spec, estimate))
    with open_registry() as registry:
        record = registry.update_job(job.id, metadata={**spec.metadata},
                                     hyperparameters=points[index])
    fill_from_job(board.row(index, points[index]), record)
    board.changed()


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
