"""Runs queued jobs one at a time, in the order they were created, on the local trainer.

The job documents are the queue, so a restart loses nothing: a queued job still runs, and a
job that was running when the server stopped is resumed from its latest checkpoint. Shutting
the server down stops the running job at a checkpoint but leaves it `running` in the queue,
for exactly that reason; only a client's cancel makes it `cancelled`.
"""

from __future__ import annotations

import logging
import shutil
import threading
from typing import Any

from tunelab import home
from tunelab.errors import TunelabError
from tunelab.server.jobs import JobStore

log = logging.getLogger("tunelab.server")
RUNNABLE = ("validating_files", "queued")


def metric_event(payload: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """A trainer progress payload as OpenAI's metrics event (message, data), if it is one."""
    step = payload.get("step")
    train_loss = payload.get("train_loss", payload.get("loss"))
    valid_loss = payload.get("valid_loss", payload.get("val_loss"))
    if step is None or (train_loss is None and valid_loss is None):
        return None
    data = {"step": step, "train_loss": train_loss, "valid_loss": valid_loss,
            "total_steps": payload.get("total_steps"),
            "train_mean_token_accuracy": payload.get("train_mean_token_accuracy")}
    data = {key: value for key, value in data.items() if value is not None}
    total = f"/{data['total_steps']}" if "total_steps" in data else ""
    parts = [f"training loss={train_loss:.4f}" if train_loss is not None else None,
             f"validation loss={valid_loss:.4f}" if valid_loss is not None else None]
    return f"Step {step}{total}: " + ", ".join(part for part in parts if part), data


def public(text: str, doc: dict[str, Any]) -> str:
    """`text` with the server's own file paths replaced by the file ids the client knows."""
    for key, file_id in (("train_file", doc.get("training_file")),
                         ("validation_file", doc.get("validation_file"))):
        path = (doc.get("config") or {}).get(key)
        if path and file_id:
            text = text.replace(path, file_id)
    return text


class Worker:
    def __init__(self, store: JobStore) -> None:
        self.store = store
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._current: tuple[str, threading.Event] | None = None
        self._thread = threading.Thread(target=self._loop, name="tunelab-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def notify(self) -> None:
        self._wake.set()

    def stop_running(self, job_id: str) -> bool:
        """Ask the running job `job_id` to stop at a checkpoint; False if it isn't running."""
        with self._lock:
            if self._current and self._current[0] == job_id:
                self._current[1].set()
                return True
        return False

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
        while not self._closing.is_set():
            doc = self._next()
            if doc is None:
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            self._run(doc)

    def _next(self) -> dict[str, Any] | None:
        docs = self.store.all()
        interrupted = [doc for doc in docs if doc["status"] == "running"]
        queued = [doc for doc in docs if doc["status"] in RUNNABLE]
        return (interrupted + queued or [None])[0]

    def _run(self, doc: dict[str, Any]) -> None:
        job_id, stop = doc["id"], threading.Event()
        with self._lock:
            self._current = (job_id, stop)
        resuming = doc["status"] == "running"
        self.store.update(job_id, status="running")
        self.store.add_event(job_id, "Resuming fine-tuning job after a server restart"
                             if resuming else "Fine-tuning job started")
        try:
            result = self._train(doc, stop, resuming)
        except TunelabError as error:
            result = {"status": "failed", "error": {"code": "training_failed", "param": None,
                                                    "message": public(error.render(), doc)}}
        except Exception as error:  # a bug must fail the job, not kill the worker
            log.exception("job %s crashed", job_id)
            result = {"status": "failed", "error": {"code": "server_error", "param": None,
                                                    "message": type(error).__name__}}
        finally:
            with self._lock:
                self._current = None
        self._finish(job_id, result)

    def _train(self, doc: dict[str, Any], stop: threading.Event,
               resuming: bool) -> dict[str, Any]:
        from tunelab.config import validate_config
        from tunelab.local import orchestrator

        def on_event(payload: Any) -> None:
            self._record(doc, payload)

        if resuming and _has_checkpoint(doc["id"]):
            return orchestrator.resume(doc["id"], {}, on_event=on_event, stop=stop)
        if resuming:  # stopped before its first checkpoint: start over in a clean folder
            shutil.rmtree(home.runs_dir() / doc["id"], ignore_errors=True)
        config = validate_config(doc["config"])
        return orchestrator.train(config, job_id=doc["id"], on_event=on_event, stop=stop)

    def _record(self, doc: dict[str, Any], payload: Any) -> None:
        payload = payload if isinstance(payload, dict) else {"message": str(payload)}
        metric = metric_event(payload)
        if metric is not None:
            self.store.add_event(doc["id"], metric[0], type="metrics", data=metric[1])
        elif payload.get("message"):
            self.store.add_event(doc["id"], public(str(payload["message"]), doc),
                                 level=str(payload.get("level") or "info"))

    def _finish(self, job_id: str, result: dict[str, Any]) -> None:
        status = result.get("status") or "failed"
        if status == "cancelled" and self._closing.is_set() \
                and self.store.get(job_id)["status"] == "running":
            # Stopped by our own shutdown, not by the client: resume it on the next start.
            self.store.add_event(job_id, "Server stopping: job paused at a checkpoint")
            return
        metrics = result.get("metrics") or {}
        changes: dict[str, Any] = {"status": status, "error": result.get("error"),
                                   "trained_tokens": metrics.get("trained_tokens")}
        if status == "succeeded":
            changes["fine_tuned_model"] = result.get("fine_tuned_model")
        self.store.update(job_id, **changes)
        message = {"succeeded": "The job has successfully completed",
                   "cancelled": "The job was cancelled"}.get(status, "The job failed")
        self.store.add_event(job_id, message, level="error" if status == "failed" else "info")


def _has_checkpoint(job_id: str) -> bool:
    from tunelab.registry import open_registry

    registry = open_registry()
    try:
        return registry.find_job(job_id) is not None and bool(registry.list_checkpoints(job_id))
    finally:
        registry.close()
