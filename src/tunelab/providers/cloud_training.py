"""The cloud training path, the same for every provider:

    lifecycle gate -> check data -> estimate cost -> (confirm) -> upload, deduped
    -> create, idempotent -> record in the registry at once -> watch until a terminal status

Each step is a function the CLI calls in order and renders; nothing here prints or prompts.
The CLI builds the typed JobSpec once; these functions take it, never a dict of options.
`watch` is a generator of updates so the CLI can draw them, and detach (Ctrl-C) at any
point without cancelling: the job id is in the registry before the first poll. A watch rides
out TransientProviderError (network, 429, 5xx); every other error ends it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from tunelab.errors import DataError, ProviderError, TransientProviderError, UsageError
from tunelab.providers.base import Job, JobSpec, Provider, ProviderEvent
from tunelab.registry import JobRecord, open_registry
from tunelab.registry.metrics import STEP, step_metrics
from tunelab.registry.store import TERMINAL

MAX_OUTAGE_S = 3 * 3600.0  # a watch keeps retrying through network outages this long
WARN_DAYS = 30  # fewer days than this before closing or shutdown: say so, and go on
WAYS_ON = ("train elsewhere: --provider vertex, --provider local, or --provider NAME "
           "(an endpoint in providers.yaml)")


def require_fine_tuning(provider_name: str) -> None:
    """Fail at once, before reading data or keys, if the provider cannot train."""
    from tunelab.providers.profiles import find_profile, no_fine_tuning

    profile = find_profile(provider_name)
    if profile is not None and not profile.capabilities.fine_tuning:
        raise no_fine_tuning(provider_name)


def lifecycle_gate(provider_name: str, base_url: str | None, model: str, *,
                   live_shutdown: date | None = None) -> str | None:
    """Refuse a job the endpoint's calendar no longer allows; else the warning to show when
    fewer than WARN_DAYS days are left, or None.

    Only endpoints a calendar names are held to it (OpenAI's: api.openai.com, see
    tunelab.data.lifecycle.calendar_for); `tunelab serve` and other OpenAI-compatible servers
    are not. Runs before any data is read or sent, so a refused job uploads nothing.
    """
    from tunelab.data import lifecycle as lifecycles

    calendar = lifecycles.calendar_for(_endpoint(provider_name, base_url))
    life = calendar and lifecycles.lifecycle(calendar, model, live_shutdown=live_shutdown)
    if not life:
        return None
    now = lifecycles.today()
    if life.is_shut_down(now):
        raise UsageError(f"{model} was shut down on {life.shutdown}, with every fine-tune built "
                         f"on it (source: {life.source})", fix=WAYS_ON)
    if life.fine_tuning_closed(now):
        raise UsageError(f"{calendar} takes no new fine-tuning jobs for {model} since "
                         f"{life.fine_tuning_closes} (source: {life.source})", fix=WAYS_ON)
    close = lifecycles.days_left(life.fine_tuning_closes, now=now)
    end = lifecycles.days_left(life.shutdown, now=now)
    left = [day for day in (close, end) if day is not None]
    if not left or min(left) >= WARN_DAYS:
        return None
    parts = [f"fine-tuning on {calendar} closes in {close} days ({life.fine_tuning_closes})"
             if close is not None else "",
             f"{model} and its fine-tunes shut down in {end} days ({life.shutdown})"
             if end is not None else ""]
    return "; ".join(part for part in parts if part) + f" (source: {life.source})"


def live_shutdown(provider_name: str, base_url: str | None, model: str) -> date | None:
    """The endpoint's own shutdown_date for `model` (or its base), when its calendar binds it
    and a key is present; None otherwise. One cheap GET that never fails the command."""
    from tunelab.data import lifecycle as lifecycles
    from tunelab.data.pricing import base_model
    from tunelab.providers.openai_models import shutdown_dates
    from tunelab.providers.profiles import find_profile

    profile = find_profile(provider_name)
    endpoint = _endpoint(provider_name, base_url)
    if profile is None or lifecycles.calendar_for(endpoint) is None:
        return None
    dates = shutdown_dates(profile, endpoint)
    return dates.get(model) or dates.get(base_model(model))


def _endpoint(provider_name: str, base_url: str | None) -> str | None:
    """The base URL a provider name and --base-url reach (None for vertex and local)."""
    from tunelab.providers.profiles import find_profile

    profile = find_profile(provider_name)
    return (base_url or profile.base_url) if profile is not None else None


def check_data(path: Path, *, provider: str, model: str | None, epochs: int | None,
               role: str = "FILE") -> Any:
    """The data engineer's full check; DataError when the file breaks a rule."""
    from tunelab.data.check import check_file

    if not path.is_file():
        raise UsageError(f"{role} {path} does not exist", fix="check the path")
    report = check_file(path, provider=provider, model=model, epochs=epochs)
    if not report.ok:
        first = sorted(report.errors.listed, key=lambda p: p.line or 0)[0]
        raise DataError(f"{report.errors.total} error(s); first: {first.code}: {first.message}",
                        path=str(path), line=first.line,
                        fix=f"run `tunelab data check {path}` for every problem")
    return report


@dataclass
class CostEstimate:
    provider: str
    model: str
    epochs: int
    billed_tokens: int  # per epoch, capped per example at the model's limit
    dollars: float | None  # None when no training price is known for this model

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def estimate_cost(report: Any, *, provider: str, model: str, epochs: int | None) -> CostEstimate:
    from tunelab.data.pricing import find_price

    epochs = epochs or report.epochs
    price = find_price(provider, model)
    dollars = None
    if price is not None and price.trainable:
        dollars = report.billing_tokens * epochs * price.training_per_1m / 1e6
    return CostEstimate(provider, model, epochs, report.billing_tokens, dollars)


def needs_confirmation(estimate: CostEstimate, max_cost: float | None) -> bool:
    """Ask unless a --max-cost was given and a known estimate stays under it."""
    if max_cost is None or estimate.dollars is None:
        return True
    return estimate.dollars > max_cost


def run_config(spec: JobSpec, estimate: CostEstimate) -> dict[str, Any]:
    """What the registry keeps as a cloud job's config: its hyperparameters and estimate."""
    return {"hyperparameters": {"n_epochs": spec.epochs, "learning_rate": spec.learning_rate,
                                "batch_size": spec.batch_size},
            "seed": spec.seed, "estimated_cost": estimate.as_dict()}


def record_job(provider: Provider, job: Job, *, local_files: dict[str, str],
               config: dict[str, Any], metadata: dict[str, str] | None = None) -> JobRecord:
    """Put a provider's job in the registry (or refresh it): done right after create."""
    with open_registry() as registry:
        existing = registry.find_job(job.id)
        fields = dict(status=job.status, native_status=job.native_status,
                      fine_tuned_model=job.fine_tuned_model, error=job.error)
        if existing is not None:
            return registry.update_job(job.id, **fields)
        now = time.time()
        record = JobRecord(id=job.id, provider=provider.name, created_at=job.created_at or now,
                           updated_at=now, endpoint=provider.base_url,
                           base_model=job.base_model, suffix=job.suffix,
                           training_file=job.training_file,
                           validation_file=job.validation_file,
                           config={**config, "local_files": local_files},
                           metadata=dict(metadata) if metadata else None, **fields)
        registry.create_job(record)
        registry.add_event(job.id, f"created on {provider.name} as {job.id}")
        return record


def create_and_record(provider: Provider, spec: JobSpec, estimate: CostEstimate, *,
                      local_files: dict[str, str]) -> Job:
    """Create the job from uploaded files (spec names their ids) and record it at once, so
    it is in the registry before anyone polls it: the CLI's and the dashboard's one path."""
    job = provider.create_job(spec)
    record_job(provider, job, local_files=local_files, config=run_config(spec, estimate),
               metadata=spec.metadata)
    return job


def refresh(provider: Provider, job_id: str) -> Job:
    """The provider's view of a job, copied into the registry when the provider is mirrored
    (a local job's row is written by its trainer: nothing to copy)."""
    job = provider.get_job(job_id)
    if provider.capabilities.mirrored:
        record_job(provider, job, local_files={}, config={})
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
        record_job(provider, job, local_files={}, config={})
    return job, "cancelled" if job.status in TERMINAL else "requested"


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
            if values:
                registry.add_metrics(job.id, int(values.pop(STEP)), values)


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
                                    fix=f"reattach later with `tunelab jobs watch {job_id}`") \
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
