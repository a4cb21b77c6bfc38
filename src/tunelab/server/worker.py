"""Runs the server's jobs one at a time, in the order they were created, on the local trainer.

The registry is the queue: the rows the server created that are still `queued` (or
`validating_files`) wait their turn, and a row still `running` was interrupted, so it goes
first and resumes from its latest checkpoint. A restart therefore loses nothing. Shutting
the server down stops the running job at a checkpoint and leaves it `running`, for exactly
that reason; only a client's cancel makes it `cancelled`.

One bad record (an unreadable row, a config that no longer validates, a deleted training
file) fails that job only: nothing a job does can stop the worker thread. A job the client
cancelled stays cancelled even when its last step finishes after the cancel.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from tunelab import home
from tunelab.errors import TunelabError
from tunelab.local.orchestrator import cancel_requested
from tunelab.registry import QUEUED_FOR_WORKER, SERVER, JobRecord
from tunelab.registry.metrics import OPENAI_STEP_METRICS, TRAIN_LOSS, step_metrics, validation_loss
from tunelab.server.jobs import ServerJobs

log = logging.getLogger("tunelab.server")
RUNNABLE = ("validating_files", "queued")
IDLE_POLL_S = 1.0


def metric_event(payload: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """A trainer progress payload as OpenAI's metrics event (message, data), if it has a
    loss. The data holds the vocabulary's names (registry/metrics.py) and total_steps."""
    values = {name: value for name, value in step_metrics(payload).items()
              if name in OPENAI_STEP_METRICS}
    train_loss, valid_loss = values.get(TRAIN_LOSS), validation_loss(values)
    if "step" not in values or (train_loss is None and valid_loss is None):
        return None
    if payload.get("total_steps") is not None:
        values["total_steps"] = payload["total_steps"]
    total = f"/{values['total_steps']}" if "total_steps" in values else ""
    parts = [f"training loss={train_loss:.4f}" if train_loss is not None else None,
             f"validation loss={valid_loss:.4f}" if valid_loss is not None else None]
    return f"Step {values['step']}{total}: " + ", ".join(p for p in parts if p), values


class Worker:
    def __init__(self, jobs: ServerJobs) -> None:
        self.jobs, self.registry = jobs, jobs.registry
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._current: tuple[str, threading.Event] | None = None
        self._thread = threading.Thread(target=self._loop, name="tunelab-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def notify(self) -> None:
        self._wake.set()

    def shutdown(self, timeout: float = 60.0) -> None:
        self._closing.set()
        with self._lock:
            if self._current:
                self._current[1].set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    # the loop -----------------------------------------------------------------------
    def _loop(self) -> None:
        with home.pinned(self.jobs.home):  # the server's home, for the jobs it trains
            self._serve()

    def _serve(self) -> None:
        while not self._closing.is_set():
            try:
                job = self._next()
                if job is not None:
                    self._run(job)
                    continue
            except Exception:  # the registry itself failed (disk full, locked): try again
                log.exception("the worker could not read or record a job")
            self._wake.wait(IDLE_POLL_S)
            self._wake.clear()

    def _next(self) -> JobRecord | None:
        """The job to train next: one interrupted by a restart, then the queue in creation
        order (the server's own jobs, and runs the dashboard queued to resume)."""
        interrupted = self.registry.job_ids(origin=SERVER, statuses=("running",))
        queued = self.registry.job_ids(origin=SERVER, statuses=RUNNABLE) + \
            self.registry.job_ids(native_status=QUEUED_FOR_WORKER, statuses=RUNNABLE)
        for job_id in interrupted + queued:
            try:
                return self.registry.get_job(job_id)
            except Exception as error:  # an unreadable row fails alone
                log.exception("job %s cannot be read", job_id)
                self._fail_unreadable(job_id, error)
        return None

    def _fail_unreadable(self, job_id: str, error: Exception) -> None:
        failed = {"code": "server_error", "param": None,
                  "message": f"the job's record cannot be read ({type(error).__name__})"}
        try:
            self.registry.transition(job_id, ("running", *RUNNABLE), status="failed",
                                     error=failed)
        except Exception:  # the status is written; only reading the row back failed
            log.debug("job %s failed; its row still cannot be read", job_id)

    def _run(self, job: JobRecord) -> None:
        stop = threading.Event()
        with self._lock:
            self._current = (job.id, stop)
        try:
            # Claimed only from the status we read, so a cancel in between wins.
            if self.registry.transition(job.id, (job.status,), status="running") is None:
                return
            resuming = job.status == "running"
            self.registry.add_event(job.id, "Resuming fine-tuning job after a server restart"
                                    if resuming else "Fine-tuning job started")
            self._finish(job, self._outcome(job, stop))
        finally:
            with self._lock:
                self._current = None

    def _outcome(self, job: JobRecord, stop: threading.Event) -> dict[str, Any]:
        try:
            return self._train(job, stop)
        except TunelabError as error:
            return {"status": "failed", "error": {"code": "training_failed", "param": None,
                                                  "message": error.render()}}
        except Exception as error:  # a bug must fail the job, not kill the worker
            log.exception("job %s crashed", job.id)
            return {"status": "failed", "error": {"code": "server_error", "param": None,
                                                  "message": type(error).__name__}}

    def _train(self, job: JobRecord, stop: threading.Event) -> dict[str, Any]:
        from tunelab import runs

        def on_event(event: Any) -> None:
            # The trainer writes its messages to the registry itself; only the per-step
            # numbers, which it keeps as metric rows, become OpenAI's metrics events here.
            metric = metric_event(event) if isinstance(event, dict) else None
            if metric is not None:
                self.registry.add_event(job.id, metric[0], type="metrics", data=metric[1])

        return runs.run_queued(job, runs.Silent(on_event), stop)

    def _finish(self, job: JobRecord, result: dict[str, Any]) -> None:
        status = result.get("status") or "failed"
        if status == "cancelled" and self._closing.is_set() \
                and not cancel_requested(self.registry.get_job(job.id)):
            # Stopped by our own shutdown, not by the client: resume it on the next start.
            self.registry.reopen(job.id, ("cancelled",), status="running", finished_at=None)
            self.registry.add_event(job.id, "Server stopping: job paused at a checkpoint")
            return
        # The trainer records its own outcome (status, model, error). This write only covers
        # a job still active, which failed before the trainer had it (a config that no longer
        # validates, a deleted file); a finished job keeps its status, so a client's cancel
        # during the last step stands. The event tells what the row says.
        changes: dict[str, Any] = {"status": status}
        if result.get("error"):
            changes["error"] = result["error"]
        final = (self.registry.transition(job.id, ("running", *RUNNABLE), **changes)
                 or self.registry.get_job(job.id)).status
        message = {"succeeded": "The job has successfully completed",
                   "cancelled": "The job was cancelled"}.get(final, "The job failed")
        self.registry.add_event(job.id, message, level="error" if final == "failed" else "info")

