"""A provider's jobs mirrored into the registry: recorded, refreshed, cancelled, watched.

The launch itself (checks, cost, upload, create) is the door's (tunelab.runs.cloud), which
records each job here the moment it exists. Nothing here prints or prompts. `watch` is a
generator of updates so a face can draw them, and detach (Ctrl-C) at any point without
cancelling: the job id is in the registry before the first poll. A watch rides out
TransientProviderError (network, 429, 5xx); every other error ends it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from tunelab.errors import (
    DataError,
    NotFoundError,
    ProviderError,
    TransientProviderError,
    command,
)
from tunelab.providers.base import FileRef, Job, JobSpec, Provider, ProviderEvent
from tunelab.registry import JobRecord, open_registry
from tunelab.registry.job_config import CloudHyperparameters, CloudJob, LocalFiles
from tunelab.registry.metrics import STEP, step_metrics
from tunelab.registry.store import CANCELLING, TERMINAL

MAX_OUTAGE_S = 3 * 3600.0  # a watch keeps retrying through network outages this long


def run_config(spec: JobSpec, estimate: Any) -> CloudJob:
    """What the registry keeps as a cloud job's config: its hyperparameters and estimate."""
    return CloudJob(method=spec.method, hyperparameters=CloudHyperparameters(
        n_epochs=spec.epochs, learning_rate=spec.learning_rate, batch_size=spec.batch_size,
        beta=spec.beta), seed=spec.seed, estimated_cost=estimate.as_dict())


def record_job(provider: Provider, job: Job, *, local_files: dict[str, str],
               config: CloudJob | None = None, metadata: dict[str, str] | None = None,
               hyperparameters: dict[str, Any] | None = None) -> JobRecord:
    """Put a provider's job in the registry (or refresh it): done right after create.
    `config` (run_config) and `local_files` are a new row's; `metadata` and
    `hyperparameters` (what a sweep's trial varied) label a new row, or an existing one
    that lacks them."""
    with open_registry() as registry:
        existing = registry.find_job(job.id)
        fields = dict(status=job.status, native_status=job.native_status,
                      fine_tuned_model=job.fine_tuned_model, error=job.error)
        if existing is not None:
            labels = {key: value for key, value in (("metadata", metadata),
                                                    ("hyperparameters", hyperparameters))
                      if value and not getattr(existing, key)}
            return registry.update_job(job.id, **fields, **labels)
        now = time.time()
        record = JobRecord(id=job.id, provider=provider.name, created_at=job.created_at or now,
                           updated_at=now, endpoint=provider.base_url,
                           base_model=job.base_model, suffix=job.suffix,
                           training_file=job.training_file,
                           validation_file=job.validation_file,
                           config=(config or CloudJob()).model_copy(
                               update={"local_files": LocalFiles(**local_files)}),
                           metadata=dict(metadata) if metadata else None,
                           hyperparameters=hyperparameters, **fields)
        registry.create_job(record)
        registry.add_event(job.id, f"created on {provider.name} as {job.id}")
        return record


def reused_upload(endpoint: str, sha256: str,
                  check: Callable[[str], FileRef | None]) -> FileRef | None:
    """An earlier upload of these bytes that the endpoint still holds, or None: each file the
    registry recorded for `endpoint` with this hash, newest first, is asked of the provider.
    `check(file_id)` is the provider's FileRef for it, None for one it holds but cannot use,
    or NotFoundError for one it no longer has (then forgotten here)."""
    with open_registry() as registry:
        for file_id in registry.files_with_sha(endpoint, sha256):
            try:
                found = check(file_id)
            except NotFoundError:
                registry.forget_file(endpoint, file_id)
                continue
            if found is not None:
                return found
    return None


def refresh(provider: Provider, job_id: str) -> Job:
    """The provider's view of a job, copied into the registry when the provider is mirrored
    (a local job's row is written by its trainer: nothing to copy)."""
    job = provider.get_job(job_id)
    if provider.capabilities.mirrored:
        record_job(provider, job, local_files={})
    return job


def cancel(provider: Provider, job_id: str) -> tuple[Job, str]:
    """Cancel a job on its provider, and the registry row with it. The outcome says what
    happened: requested (it stops after its step), cancelled, or finished (it had ended
    already; nothing was sent)."""
    job = refresh(provider, job_id)
    if job.status in TERMINAL:
        return job, "finished"
    job = provider.cancel(job_id)
    if provider.capabilities.mirrored:
        record_job(provider, job, local_files={})
    stopping = job.status not in TERMINAL or job.native_status == CANCELLING
    return job, "requested" if stopping else "cancelled"


@dataclass
class WatchUpdate:
    job: Job | None  # None while the provider cannot be reached
    events: list[ProviderEvent] = field(default_factory=list)
    outage_s: float = 0.0  # how long polls have failed in a row
    problem: str | None = None  # the last transient error, shown during an outage

    @property
    def done(self) -> bool:
        return self.job is not None and self.job.status in TERMINAL


def metrics_of(event: ProviderEvent) -> dict[str, Any] | None:
    """A metrics event's values in the registry's vocabulary (step first), or None."""
    values = step_metrics(event.data) if event.type == "metrics" else {}
    return values if STEP in values else None


def _last_seen_event(job_id: str) -> str | None:
    with open_registry() as registry:
        for event in reversed(registry.list_events(job_id)):
            if event.data and event.data.get("provider_event_id"):
                return event.data["provider_event_id"]
    return None


def _store(job: Job, events: list[ProviderEvent]) -> None:
    with open_registry() as registry:
        registry.update_job(job.id, status=job.status, native_status=job.native_status,
                            fine_tuned_model=job.fine_tuned_model, error=job.error)
        for event in events:
            registry.add_event(job.id, event.message, level=event.level, type=event.type,
                               data={**(event.data or {}), "provider_event_id": event.id},
                               created_at=event.created_at or None)
            values = metrics_of(event)
            if values:  # the registry checks the step (a provider may send -1 or inf)
                with contextlib.suppress(DataError):
                    registry.add_metrics(job.id, values.pop(STEP), values)


def watch(provider: Provider, job_id: str, *, interval: float = 60.0,
          sleep: Callable[[float], None] = time.sleep,
          max_outage_s: float = MAX_OUTAGE_S) -> Iterator[WatchUpdate]:
    """Poll until the job ends, recording status, events and metrics in the registry.

    Transient failures (network down, 429, 5xx) are retried with backoff for up to
    `max_outage_s`; each failed poll still yields an update so the caller can show it.
    """
    after = _last_seen_event(job_id)
    outage_started: float | None = None
    failures = 0
    while True:
        try:
            job = provider.get_job(job_id)
            events = provider.list_events(job_id, after=after)
        except TransientProviderError as error:
            outage_started = outage_started or time.monotonic()
            failures += 1
            outage = time.monotonic() - outage_started
            if outage > max_outage_s:
                raise ProviderError(f"lost contact with {provider.name} for "
                                    f"{outage / 60:.0f} min; the job itself goes on there",
                                    code="connection_lost",
                                    fix="reattach later with "
                                        f"`{command('tunelab', 'jobs', 'watch', job_id)}`") \
                    from None
            yield WatchUpdate(None, outage_s=outage, problem=error.render())
            sleep(min(interval, 2.0 * 2 ** min(failures, 5)))
            continue
        outage_started, failures = None, 0
        if events:
            after = events[-1].id
        _store(job, events)
        update = WatchUpdate(job, events)
        yield update
        if update.done:
            return
        sleep(interval)
