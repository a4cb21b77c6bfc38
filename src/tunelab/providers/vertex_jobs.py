"""Vertex AI's TuningJob as tunelab's Job, and the events tunelab derives from it.

Vertex has no event stream: a job's timestamps, state, error and tuningDataStats are all
there is, so `events_from_job` turns them into events with stable ids.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from tunelab.providers.base import Checkpoint, Job, ProviderEvent
from tunelab.providers.sdk_errors import scrub_json

# Vertex JobState -> tunelab status. Anything else is kept as the native state and shown.
STATUSES = {
    "JOB_STATE_QUEUED": "queued",
    "JOB_STATE_PENDING": "queued",
    "JOB_STATE_RUNNING": "running",
    "JOB_STATE_SUCCEEDED": "succeeded",
    "JOB_STATE_FAILED": "failed",
    "JOB_STATE_EXPIRED": "failed",
    "JOB_STATE_CANCELLING": "cancelled",
    "JOB_STATE_CANCELLED": "cancelled",
}


def map_status(state: str | None) -> str:
    """tunelab's status for a Vertex JOB_STATE_*; an unknown state is returned unchanged."""
    return STATUSES.get(state or "", state or "unknown")


def _timestamp(value: dt.datetime | None) -> float | None:
    return value.timestamp() if value else None


def data_stats(raw: dict[str, Any]) -> dict[str, Any] | None:
    """Vertex's supervised tuningDataStats, reduced to what a user acts on; None if absent."""
    stats = (raw.get("tuning_data_stats") or {}).get("supervised_tuning_data_stats")
    if not stats:
        return None
    found = {"examples": stats.get("tuning_dataset_example_count"),
             "billable_tokens": stats.get("total_billable_token_count"),
             "tuning_steps": stats.get("tuning_step_count"),
             "dropped_examples": stats.get("total_truncated_example_count"),
             "dropped_reasons": stats.get("dropped_example_reasons")}
    return {key: value for key, value in found.items() if value not in (None, [])}


def job_from_sdk(tuning_job: Any) -> Job:
    """The SDK's TuningJob as tunelab's Job: the one place Vertex's job text enters tunelab,
    so every string in it is scrubbed of tokens here (events and checkpoints derive from it)."""
    raw = scrub_json(tuning_job.model_dump(mode="json", exclude_none=True,
                                           exclude={"sdk_http_response"}))
    # A JobState member dumps as its value; a state the SDK does not know yet, as itself.
    state = raw.get("state")
    spec = raw.get("supervised_tuning_spec") or {}
    stats = data_stats(raw)
    if stats:
        raw["tunelab_data_stats"] = stats
    tuned = raw.get("tuned_model") or {}
    return Job(id=raw.get("name") or "", status=map_status(state), native_status=state,
               base_model=raw.get("base_model") or "", fine_tuned_model=tuned.get("endpoint"),
               created_at=_timestamp(tuning_job.create_time),
               finished_at=_timestamp(tuning_job.end_time),
               training_file=spec.get("training_dataset_uri"),
               validation_file=spec.get("validation_dataset_uri"),
               suffix=raw.get("tuned_model_display_name"),
               trained_tokens=(stats or {}).get("billable_tokens"),
               error=raw.get("error"), raw=raw)


def checkpoints_from_job(job: Job) -> list[Checkpoint]:
    """The checkpoints in a job's tunedModel, oldest first; each is served by its own
    endpoint, which is what chat takes as the model."""
    found = ((job.raw.get("tuned_model") or {}).get("checkpoints")) or []
    created = job.finished_at or job.created_at or 0.0
    return [Checkpoint(job_id=job.id, name=f"checkpoint-{item.get('checkpoint_id')}",
                       kind="epoch" if item.get("epoch") is not None else "step",
                       created_at=created, step=_integer(item.get("step")),
                       epoch=_integer(item.get("epoch")), model=item.get("endpoint"))
            for item in found]


def _integer(value: Any) -> int | None:
    # Vertex sends int64 fields as JSON strings.
    return int(value) if value not in (None, "") else None


def events_from_job(job: Job) -> list[ProviderEvent]:
    """Events in a fixed order (created, running, stats, finished). Each appears only once
    the ones before it can no longer appear, so `after` never skips one."""
    raw = job.raw
    events = [ProviderEvent("created", job.created_at or 0.0,
                            f"tuning job created for {job.base_model}")]
    started = raw.get("start_time")
    if started:
        events.append(ProviderEvent("running", _parse_time(started), "tuning started"))
    stats = raw.get("tunelab_data_stats")
    if stats and (started or job.finished_at):
        events.append(ProviderEvent("data_stats", _parse_time(raw.get("update_time")),
                                    describe_stats(stats), data=stats))
    if job.finished_at or job.status in ("succeeded", "failed") or \
            job.native_status == "JOB_STATE_CANCELLED":
        events.append(_finished_event(job))
    return events


def describe_stats(stats: dict[str, Any]) -> str:
    parts = [f"{label} {stats[key]:,}" for key, label in
             (("examples", "examples"), ("billable_tokens", "billable tokens"),
              ("tuning_steps", "tuning steps"), ("dropped_examples", "dropped examples"))
             if isinstance(stats.get(key), int)]
    reasons = stats.get("dropped_reasons")
    text = "dataset: " + ", ".join(parts)
    return text + (f" ({'; '.join(map(str, reasons[:3]))})" if reasons else "")


def _finished_event(job: Job) -> ProviderEvent:
    when = job.finished_at or _parse_time(job.raw.get("update_time"))
    if job.status == "succeeded":
        return ProviderEvent("finished", when, f"tuning succeeded: endpoint {job.fine_tuned_model}")
    detail = (job.error or {}).get("message") or job.native_status
    return ProviderEvent("finished", when, f"tuning {job.status}: {detail}",
                         level="error" if job.status == "failed" else "info")


def _parse_time(value: str | None) -> float:
    if not value:
        return time.time()
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
