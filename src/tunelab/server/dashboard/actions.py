"""What the dashboard's buttons do on a job: cancel and resume (through the door, tunelab.runs),
export; and what follows a start from the new-run page (dashboard/launches.py).

A local run started or resumed here is queued for the server's worker, which trains one at
a time and resumes after a restart. An export runs on one background thread, so a click
returns at once and the job's events say how it went.
"""

from __future__ import annotations

import contextvars
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tunelab import home
from tunelab.config import declared, value_type
from tunelab.errors import TunelabError, UsageError
from tunelab.registry import JobRecord
from tunelab.server.jobs import ServerJobs
from tunelab.server.settings import ServeSettings
from tunelab.server.worker import Worker

log = logging.getLogger("tunelab.server")
EXPORT_FORMATS = ("hf", "adapter", "gguf")
# The overrides the new-run form offers (TrainConfig declares which), with the type each is
# read as.
OVERRIDES: dict[str, type] = {key: value_type(key) for key in declared(dashboard=True)}


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

    def started(self, job: JobRecord) -> None:
        """A job the new-run page made: the worker looks at its queue, the job says so."""
        self.registry.add_event(job.id, "Started from the dashboard")
        self.worker.notify()

    # buttons on a job ---------------------------------------------------------------
    def cancel(self, job: JobRecord) -> str:
        """Stop a job through the door, on whatever provider it runs. Blocking (a cloud
        call): run it off the event loop."""
        from tunelab import runs

        return runs.cancel(job.id)[1]

    def resume(self, job: JobRecord, checkpoint: str | None = None) -> None:
        """Queue a cancelled or failed local job to continue from `checkpoint` (a kept
        checkpoint's name; the latest when None) in the worker's turn."""
        from tunelab import runs

        runs.resume(job, checkpoint, reporter=runs.Silent(), wait=False)
        self.worker.notify()

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
        self.background.submit(contextvars.copy_context().run, self._export, job.id, fmt,
                               target)
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
