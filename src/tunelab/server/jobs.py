"""Fine-tuning jobs as OpenAI's clients see them, over the registry's rows.

A job created through `POST /v1/fine_tuning/jobs` is a registry row (provider "local",
origin "server"): the same row `tunelab jobs show` prints, with one status and one event
list, which the local trainer writes to as it runs. The rows the server created, in
creation order (seq), are also the worker's queue.

Shapes follow OpenAI's `fine_tuning.job` and `fine_tuning.job.event` objects. What the
trainer writes may name files on this machine; `public()` turns those into the ids and
names the client knows before anything leaves the server.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from tunelab.config import TrainConfig
from tunelab.errors import RegistryError
from tunelab.registry import SERVER, Event, JobRecord, Registry
from tunelab.registry.job_config import CloudJob
from tunelab.registry.metrics import TRAINED_TOKENS
from tunelab.server.errors import ApiError, home_relative, not_found

ORGANIZATION = "org-tunelab-local"
log = logging.getLogger("tunelab.server")


class ServerJobs:
    """The server's view of the registry: only the jobs it created."""

    def __init__(self, registry: Registry, home: Path) -> None:
        self.registry, self.home = registry, home

    def start(self, config: TrainConfig, *, files: tuple[str, str | None],
              hyperparameters: dict[str, Any], labels: dict[str, str] | None) -> JobRecord:
        """Queue a job for the worker through the door (tunelab.runs): the row shows the
        client's file ids and echoes what it asked."""
        from tunelab import runs

        request = runs.RunRequest(config=config, labels=dict(labels or {}),
                                  intent=runs.Intent(wait=False), origin=SERVER,
                                  shown_files=files, shown_hyperparameters=hyperparameters)
        job = runs.start(request, runs.Silent()).job
        assert job is not None  # a queued start always makes its row
        return job

    def get(self, job_id: str) -> JobRecord:
        job = self.registry.find_job(job_id)
        if job is None or job.origin != SERVER:  # a CLI run is not the API's to show
            raise not_found("job", job_id)
        return job

    def list(self) -> list[JobRecord]:
        """Newest first. A damaged row is skipped with a warning: it must not hide the
        others from every client."""
        jobs = []
        for job_id in reversed(self.registry.job_ids(origin=SERVER)):
            try:
                jobs.append(self.registry.find_job(job_id))
            except RegistryError as error:
                log.warning("skipped: %s", error.message)
        return [job for job in jobs if job is not None]

    def cancel(self, job_id: str) -> JobRecord:
        """Cancel through the door: the row is cancelled at once, a running job stops after
        its step (the worker finishes it)."""
        from tunelab import runs

        job = self.get(job_id)
        _, outcome = runs.cancel(job_id)
        if outcome == "finished":
            raise ApiError(400, f"Job {job_id} is already {job.status} and cannot be "
                           "cancelled", code="invalid_job_state")
        return self.get(job_id)

    def events(self, job_id: str) -> list[dict[str, Any]]:
        """Newest first, like OpenAI."""
        job = self.get(job_id)
        return [self.event_object(event, job)
                for event in reversed(self.registry.list_events(job_id))]

    # OpenAI's shapes ----------------------------------------------------------------
    def job_object(self, job: JobRecord) -> dict[str, Any]:
        hyper = job.hyperparameters or {}
        method = job.config.method if isinstance(job.config, TrainConfig) else "supervised"
        return {
            "object": "fine_tuning.job", "id": job.id, "created_at": int(job.created_at),
            "model": job.base_model, "training_file": job.training_file,
            "validation_file": job.validation_file, "status": job.status,
            "fine_tuned_model": job.fine_tuned_model,
            "finished_at": int(job.finished_at) if job.finished_at else None,
            "error": self._error_object(job),
            "trained_tokens": job.metrics.get(TRAINED_TOKENS),
            # OpenAI's top-level (legacy) hyperparameters have no beta; the method's do
            "hyperparameters": {key: value for key, value in hyper.items() if key != "beta"},
            "method": {"type": method, method: {"hyperparameters": hyper}},
            "organization_id": ORGANIZATION, "result_files": [],
            "seed": job.config.seed if isinstance(job.config, TrainConfig | CloudJob) else None,
            "estimated_finish": None, "integrations": [],
            "metadata": job.metadata, "user_provided_suffix": job.suffix,
        }

    def event_object(self, event: Event, job: JobRecord) -> dict[str, Any]:
        return {"object": "fine_tuning.job.event", "id": f"ftevent-{job.id[6:]}-{event.seq}",
                "created_at": int(event.created_at), "level": event.level,
                "message": self.public(event.message, job), "type": event.type,
                "data": event.data or {}}

    def _error_object(self, job: JobRecord) -> dict[str, Any] | None:
        if not job.error:
            return None
        return {"code": job.error.get("code"), "param": job.error.get("param"),
                "message": self.public(str(job.error.get("message") or ""), job)}

    def public(self, text: str, job: JobRecord) -> str:
        """`text` with this machine's paths replaced: the job's data files by the file ids
        the client uploaded, anything else under the home by TUNELAB_HOME."""
        if isinstance(job.config, TrainConfig):
            for path, file_id in ((job.config.train_file, job.training_file),
                                  (job.config.validation_file, job.validation_file)):
                if path and file_id:
                    text = text.replace(str(path), file_id)
        return home_relative(text, self.home)


def page(items: list[dict[str, Any]], *, after: str | None, limit: int) -> dict[str, Any]:
    """OpenAI's cursor page: items after the one whose id is `after`, `limit` of them."""
    if after:
        ids = [item["id"] for item in items]
        items = items[ids.index(after) + 1:] if after in ids else []
    chunk = items[:limit]
    return {"object": "list", "data": chunk, "has_more": len(items) > len(chunk),
            "first_id": chunk[0]["id"] if chunk else None,
            "last_id": chunk[-1]["id"] if chunk else None}
