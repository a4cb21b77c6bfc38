"""What the dashboard's buttons do: start a local run, cancel, resume, export.

A run started here is a server job, exactly as `POST /v1/fine_tuning/jobs` makes one: a
queued registry row (origin "server") that the server's worker trains, one at a time, and
resumes after a restart. Its config is resolved as `tunelab train` resolves its flags
(preset < overrides), with the server's caps (--max-steps, --max-length) on top.

Work that is not a training job (export, a resume of a CLI run) runs on one background
thread, so a click returns at once and the job's events say how it went.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from tunelab import home
from tunelab.config import declared, value_type
from tunelab.errors import TunelabError, UsageError
from tunelab.registry import SERVER, JobRecord
from tunelab.server.jobs import ServerJobs
from tunelab.server.settings import ServeSettings
from tunelab.server.worker import Worker

log = logging.getLogger("tunelab.server")
EXPORT_FORMATS = ("hf", "adapter", "gguf")
# The overrides the new-run form offers (TrainConfig declares which), with the type each is
# read as.
OVERRIDES: dict[str, type] = {key: value_type(key) for key in declared(dashboard=True)}


@dataclass(frozen=True)
class RunRequest:
    """The new-run form, read: what ServerJobs.create records beside the config."""

    model: str
    training_file: str
    validation_file: str | None = None
    suffix: str | None = None
    metadata: dict[str, str] | None = None


def read_overrides(form: dict[str, str]) -> dict[str, Any]:
    """The form's non-empty override fields, typed; a bad number names its field."""
    values: dict[str, Any] = {}
    for key, kind in OVERRIDES.items():
        raw = (form.get(key) or "").strip()
        if not raw:
            continue
        try:
            values[key] = kind(raw)
        except ValueError:
            raise UsageError(f"{key}: {raw!r} is not a{'n integer' if kind is int else ' number'}",
                             fix=f"enter a {kind.__name__} or leave {key} empty") from None
    return values


class Actions:
    def __init__(self, jobs: ServerJobs, worker: Worker, settings: ServeSettings) -> None:
        self.jobs, self.worker, self.settings = jobs, worker, settings
        self.registry = jobs.registry
        self.background = ThreadPoolExecutor(max_workers=1,
                                             thread_name_prefix="tunelab-dashboard")

    # a new run ----------------------------------------------------------------------
    def config(self, train_path: str, validation_path: str | None, preset: str | None,
               model: str | None, suffix: str | None, overrides: dict[str, Any]) -> Any:
        from tunelab.config import resolve_config

        flags = {**overrides, "train_file": train_path, "validation_file": validation_path,
                 "model": model or None, "suffix": suffix or None}
        for cap in ("max_steps", "max_length"):  # the server's caps win, as for the API
            limit = getattr(self.settings, cap)
            if limit is not None:
                flags[cap] = min(flags.get(cap) or limit, limit)
        return resolve_config(preset=preset or None, flags=flags)

    def start(self, request: RunRequest, config: Any) -> JobRecord:
        resolved = config.model_dump(mode="json")
        hyper = {"n_epochs": config.epochs, "batch_size": config.batch_size,
                 "learning_rate": config.learning_rate}
        job = self.jobs.create(request, resolved, hyper)
        self.registry.add_event(job.id, "Started from the dashboard")
        self.worker.notify()
        return job

    # buttons on a job ---------------------------------------------------------------
    def cancel(self, job: JobRecord) -> str:
        """Stop a job: a cloud one through its provider (as `tunelab jobs cancel` does), a
        local one here. Blocking (a cloud call): run it off the event loop."""
        if job.provider != "local":
            from tunelab.providers import cloud_training, job_provider

            return cloud_training.cancel(job_provider(job), job.id)[1]
        if job.origin == SERVER:
            self.jobs.cancel(job.id)
            self.worker.stop_running(job.id)
            return "cancelled"
        from tunelab.local.orchestrator import request_cancel

        return request_cancel(job.id)

    def resume(self, job: JobRecord, checkpoint: str | None = None) -> None:
        """Continue from `checkpoint` (a kept checkpoint's name; the latest when None): the
        worker's own jobs through the worker (they stay in its queue), a CLI run as
        `tunelab train --resume` does. Both resume from `latest`, so it is moved first."""
        if job.provider != "local" or job.status not in ("cancelled", "failed"):
            raise UsageError(f"{job.id} is {job.status}; only a cancelled or failed local job "
                             "resumes here", fix=f"see `tunelab train --resume {job.id} --help`")
        if checkpoint:
            from tunelab.local.orchestrator import choose_checkpoint

            choose_checkpoint(job, checkpoint)
            self.registry.add_event(job.id, f"Resume from {checkpoint} chosen on the dashboard")
        if job.origin == SERVER:
            if self.registry.reopen(job.id, ("cancelled", "failed"), status="queued",
                                    error=None, finished_at=None) is not None:
                self.registry.add_event(job.id, "Resume requested from the dashboard")
                self.worker.notify()
            return
        self.registry.add_event(job.id, "Resume requested from the dashboard")
        self.background.submit(self._resume_cli_run, job.id)

    def _resume_cli_run(self, job_id: str) -> None:
        from tunelab.local import orchestrator

        try:
            orchestrator.resume(job_id, {})
        except Exception as error:  # the job's events say why; the thread goes on
            self.registry.add_event(job_id, f"resume failed: {_said(error)}", level="error")

    def export(self, job: JobRecord, fmt: str) -> str:
        """Start an export into TUNELAB_HOME/exports/JOB-FORMAT; its folder is returned and
        the job's events say when it is written (export_job records it)."""
        if fmt not in EXPORT_FORMATS:
            raise UsageError(f"format {fmt!r} is not one of {', '.join(EXPORT_FORMATS)}",
                             fix="pick a format from the list")
        if job.provider != "local" or job.status != "succeeded":
            raise UsageError(f"{job.id} is a {job.status} {job.provider} job: only a succeeded "
                             "local job has weights to export", fix="pick a succeeded local job")
        target = home.home() / "exports" / f"{job.id}-{fmt}"
        self.registry.add_event(job.id, f"Export ({fmt}) requested from the dashboard")
        self.background.submit(self._export, job.id, fmt, target)
        return str(target)

    def _export(self, job_id: str, fmt: str, target: Any) -> None:
        from tunelab.local.export import ExportRequest, export_job

        began = time.monotonic()
        try:
            export_job(ExportRequest(job=job_id, output_dir=target, format=fmt, force=True))
        except Exception as error:
            self.registry.add_event(job_id, f"export failed: {_said(error)}", level="error")
            return
        log.info("export of %s took %.1f s", job_id, time.monotonic() - began)


def _said(error: Exception) -> str:
    """A failure as one line for the job's events: ours with its fix, a bug by its type."""
    return error.render() if isinstance(error, TunelabError) else \
        f"internal error ({type(error).__name__})"
