"""The one door through which every face starts, cancels and resumes every job.

The CLI, the dashboard, the API server, `tunelab sweep` and `migrate retrain` each build a
RunRequest and a Reporter and call `start`; the same checks then run in the same order
whoever asks. `cancel` and `resume` take the registry's row and go through the job's own
provider (the local one included), never around it.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from tunelab.errors import NotFoundError, UsageError, command
from tunelab.providers import cloud_training, job_provider
from tunelab.providers.base import Job, ProviderSettings
from tunelab.registry import QUEUED_FOR_WORKER, SERVER, JobRecord, open_registry
from tunelab.runs import cloud
from tunelab.runs.reporter import Reporter
from tunelab.runs.request import LOCAL, RunRequest
from tunelab.runs.started import Started

if TYPE_CHECKING:
    from tunelab.local.warm import Trial

RESUMABLE = ("cancelled", "failed")


def start(request: RunRequest, reporter: Reporter, *, stop: threading.Event | None = None,
          trial: Trial | None = None) -> Started:
    """Start one job as `request.intent` says. `stop` ends a local run at a checkpoint (the
    face's Ctrl-C, a worker's shutdown); `trial` is a sweep's warm-started local trial."""
    if request.target.is_local:  # the trainer (torch) loads only for a local job
        from tunelab.runs import local

        return local.start(request, reporter, stop=stop, trial=trial)
    return cloud.start([request], reporter)


def start_many(requests: list[RunRequest], reporter: Reporter) -> Started:
    """Start several cloud jobs on one dataset together (a sweep's grid): one check, one cost
    question for them all, one upload."""
    if any(request.target.is_local for request in requests):
        raise UsageError("local jobs train one at a time",
                         fix="start each with `start`, or sweep them with `tunelab sweep`")
    return cloud.start(requests, reporter)


def cancel(job_id: str, *, provider: str | None = None,
           settings: ProviderSettings | None = None) -> tuple[Job, str]:
    """Cancel a job through its own provider (the local one included), and the registry row
    with it. `provider` reaches a job the registry has not seen (made elsewhere); `settings`
    say where it points and how long to keep trying. The outcome says what happened:
    requested (a live run stops after its step), cancelled, or finished (it had ended
    already; nothing was sent)."""
    with open_registry() as registry:
        # Without a provider the job must be known: NotFoundError names `tunelab jobs list`.
        record = registry.find_job(job_id) if provider else registry.get_job(job_id)
    settings = settings or ProviderSettings()
    remote = job_provider(record, settings, name=provider, base_url=settings.base_url)
    return cloud_training.cancel(remote, job_id)


def resume(job: JobRecord, checkpoint: str | None = None, *, reporter: Reporter,
           overrides: dict | None = None, wait: bool = True,
           stop: threading.Event | None = None, trial: Trial | None = None) -> Started:
    """Continue a local job from `checkpoint` (a kept checkpoint's name; its latest when
    None). `overrides` (e.g. epochs) extend it. wait=False queues it for the server's worker
    instead of training here."""
    from tunelab.local import orchestrator

    if job.provider != LOCAL:
        raise UsageError(f"job {job.id} ran on {job.provider}; only local jobs resume",
                         fix="start a new run with `tunelab train`")
    if not wait:
        _check_requeue(job)
    if checkpoint:
        orchestrator.choose_checkpoint(job, checkpoint)
        with open_registry() as registry:
            registry.add_event(job.id, f"Resume from {checkpoint} chosen")
    if not wait:
        return Started(jobs=[_requeue(job)])
    result = orchestrator.resume(job.id, overrides, on_event=reporter.event, stop=stop,
                                 trial=trial)
    with open_registry() as registry:
        return Started(jobs=[registry.get_job(job.id)], result=result)


def _check_requeue(job: JobRecord) -> None:
    """Only a cancelled or failed job goes back in the queue; one the server did not make
    needs a checkpoint (the worker would start the server's own from scratch)."""
    from tunelab.local import checkpoints

    if job.status not in RESUMABLE:
        raise UsageError(f"{job.id} is {job.status}; only a cancelled or failed job resumes",
                         fix=f"see `{command('tunelab', 'train', '--resume', job.id, '--help')}`")
    if job.origin != SERVER and not (
            job.run_dir and checkpoints.candidates(Path(job.run_dir) / "checkpoints")):
        raise NotFoundError(f"job {job.id} has no checkpoint to resume from",
                            fix="start it again with `tunelab train`")


def _requeue(job: JobRecord) -> JobRecord:
    """Back in the server worker's queue, to resume in its turn."""
    with open_registry() as registry:
        queued = registry.reopen(job.id, RESUMABLE, status="queued",
                                 native_status=QUEUED_FOR_WORKER, error=None,
                                 finished_at=None)
        if queued is None:
            return registry.get_job(job.id)
        registry.add_event(job.id, "Resume requested")
        return queued


def run_queued(job: JobRecord, reporter: Reporter, stop: threading.Event) -> dict:
    """The server worker's turn for a queued job: trained here to its end."""
    from tunelab.runs import local

    return local.run_queued(job, reporter, stop)
