"""`tunelab migrate inventory`: every fine-tuned model and job of the account, with its days.

Each job is imported into the registry (so `tunelab jobs list/show` show it) under its own
id: a second run refreshes the rows, it never adds one twice. Models with no job behind them
(made by another project of the organisation, or a deleted job) are listed but not imported.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

from tunelab.data.lifecycle import days_left, lifecycle
from tunelab.errors import ProviderError
from tunelab.home import outside_name
from tunelab.migrate.state import save_state
from tunelab.providers.base import Checkpoint, Job
from tunelab.providers.openai_compat import OpenAICompatProvider, RemoteModel
from tunelab.registry import Checkpoint as CheckpointRow
from tunelab.registry import JobRecord, Registry, open_registry
from tunelab.registry.job_config import LOCAL, ImportedCheckpoint, ImportedJob
from tunelab.registry.metrics import TRAINED_TOKENS


@dataclass
class Entry:
    """One fine-tuned model (or a job that made none yet) and what the inventory knows."""

    job_id: str | None
    status: str | None
    base_model: str
    fine_tuned_model: str | None
    suffix: str | None
    method: str = "supervised"  # OpenAI's method.type: supervised or dpo
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    training_file: str | None = None
    validation_file: str | None = None
    result_files: list[str] = field(default_factory=list)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    shutdown: str | None = None
    days_left: int | None = None
    lifecycle_source: str | None = None
    # "new", "updated", or None (no job to import, or one trained here: an account that
    # is this machine's own `tunelab serve`)
    imported: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def suffix_of(model: str | None) -> str | None:
    """The suffix inside a fine-tuned name: ft:BASE:ORG:SUFFIX:ID (OpenAI keeps no field)."""
    parts = (model or "").split(":")
    return parts[3] or None if len(parts) == 5 and parts[0] == "ft" else None


def base_of(model: str) -> str:
    parts = model.split(":")
    return parts[1] if parts[0] == "ft" and len(parts) > 1 else model


def method_of(job: Job) -> str:
    """The job's training method (OpenAI's method.type); older jobs have none: supervised."""
    return (job.raw.get("method") or {}).get("type") or "supervised"


def hyperparameters_of(job: Job) -> dict[str, Any]:
    """What the job trained with: the method's hyperparameters (newer jobs) or the legacy
    top-level ones; values OpenAI left at "auto" are kept as such."""
    method = (job.raw.get("method") or {})
    nested = ((method.get(method.get("type") or "supervised") or {})
              .get("hyperparameters") or {})
    legacy = job.raw.get("hyperparameters") or {}
    return {key: value for key, value in {**legacy, **nested}.items() if value is not None}


def take_inventory(account: OpenAICompatProvider,
                   on_page: Callable[[int, int], None] | None = None,
                   on_note: Callable[[str], None] | None = None) -> list[Entry]:
    """Read the account, import its jobs, and return one entry per job and per orphan model.
    `on_page(pages, jobs)` follows the job listing; `on_note(text)` hears what was ignored
    (a shutdown_date that is no date: that model goes on without one)."""
    models = {model.id: model for model in account.list_models()}
    for model in models.values():
        if model.unreadable_date and on_note is not None:
            on_note(f"{model.id}: shutdown_date {model.unreadable_date!r} is not a date "
                    "(YYYY-MM-DD); ignored")
    jobs = [job for job in account.all_jobs(on_page) if _safe_id(job.id, on_note)]
    entries = []
    with open_registry() as registry:
        for job in jobs:
            checkpoints = account.list_checkpoints(job.id) if job.status == "succeeded" else []
            entry = _entry(account.name, job, checkpoints, models)
            entry.imported = _import(registry, account, job, checkpoints, entry)
            entries.append(entry)
    made = {job.fine_tuned_model for job in jobs}
    for model in models.values():
        if model.id.startswith("ft:") and model.id not in made and ":ckpt-" not in model.id:
            entries.append(_orphan(account.name, model))
    return entries


def _safe_id(job_id: str, on_note: Callable[[str], None] | None) -> bool:
    """A job id tunelab can keep: one that can name a folder (home.outside_name). Any other
    is left out of the registry, said in a note, so no page or path is ever built on it."""
    try:
        outside_name(job_id, what="job id")
    except ProviderError as error:
        if on_note is not None:
            on_note(f"{error.message}; that job is left out of the inventory")
        return False
    return True


def _live_shutdown(models: dict[str, RemoteModel], *names: str | None) -> date | None:
    for name in names:
        model = models.get(name or "")
        if model is not None and model.shutdown_date:
            return date.fromisoformat(model.shutdown_date)
    return None


def _dates(entry: Entry, provider: str, model: str, live: date | None) -> None:
    found = lifecycle(provider, model, live_shutdown=live)
    if found is not None and found.shutdown is not None:
        entry.shutdown = found.shutdown.isoformat()
        entry.days_left = days_left(found.shutdown)
        entry.lifecycle_source = found.source


def _entry(provider: str, job: Job, checkpoints: list[Checkpoint],
           models: dict[str, RemoteModel]) -> Entry:
    entry = Entry(job_id=job.id, status=job.status, base_model=job.base_model,
                  fine_tuned_model=job.fine_tuned_model,
                  suffix=job.suffix or suffix_of(job.fine_tuned_model),
                  method=method_of(job), hyperparameters=hyperparameters_of(job),
                  training_file=job.training_file,
                  validation_file=job.validation_file,
                  result_files=list(job.raw.get("result_files") or []),
                  checkpoints=[{"id": c.name, "step": c.step, "model": c.model,
                                "metrics": c.metrics} for c in checkpoints])
    _dates(entry, provider, job.fine_tuned_model or job.base_model,
           _live_shutdown(models, job.fine_tuned_model, job.base_model))
    return entry


def _orphan(provider: str, model: RemoteModel) -> Entry:
    entry = Entry(job_id=None, status=None, base_model=base_of(model.id),
                  fine_tuned_model=model.id, suffix=suffix_of(model.id))
    _dates(entry, provider, model.id, _live_shutdown({model.id: model}, model.id))
    return entry


def _import(registry: Registry, account: OpenAICompatProvider, job: Job,
            checkpoints: list[Checkpoint], entry: Entry) -> str | None:
    """Create or refresh the job's registry row; "new" or "updated" (None: the row is a run
    trained here, which keeps its own config)."""
    found = {"inventoried_at": time.time(), "shutdown": entry.shutdown, "method": entry.method,
             "days_left_source": entry.lifecycle_source, "result_files": entry.result_files,
             "checkpoints": [ImportedCheckpoint(id=c.name, step=c.step, model=c.model)
                             for c in checkpoints]}
    record = registry.find_job(job.id)
    # A row is this job only if provider, endpoint and id all match: a local run, or a job
    # of another account that has the same id, is left as it is (and this one not imported).
    if record is not None and (record.kind == LOCAL or (record.provider, record.endpoint)
                               != (account.name, account.base_url)):
        return None
    summary = dict(record.metrics) if record else {}
    if job.trained_tokens is not None:
        summary[TRAINED_TOKENS] = job.trained_tokens
    outcome = "updated"
    if record is None:
        now = time.time()
        record = registry.create_job(JobRecord(
            id=job.id, provider=account.name, endpoint=account.base_url, status=job.status,
            native_status=job.native_status, created_at=job.created_at or now,
            updated_at=now, finished_at=job.finished_at, base_model=job.base_model,
            fine_tuned_model=job.fine_tuned_model, suffix=entry.suffix,
            training_file=job.training_file, validation_file=job.validation_file,
            config=ImportedJob(), metrics=summary, error=job.error,
            hyperparameters=entry.hyperparameters,
            metadata=dict(job.raw.get("metadata") or {}) or None))
        registry.add_event(job.id, f"imported from {account.name} by `tunelab migrate "
                                   "inventory`")
        outcome = "new"
    else:
        record = registry.update_job(job.id, status=job.status, native_status=job.native_status,
                                     fine_tuned_model=job.fine_tuned_model, error=job.error,
                                     hyperparameters=entry.hyperparameters, metrics=summary)
    save_state(registry, record, **found)
    for checkpoint in checkpoints:
        registry.upsert_checkpoint(CheckpointRow(
            job_id=job.id, name=checkpoint.name, kind=checkpoint.kind,
            created_at=checkpoint.created_at, step=checkpoint.step,
            metrics=dict(checkpoint.metrics)))
    return outcome
