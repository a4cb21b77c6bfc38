"""Fine-tuning jobs as the server keeps them: one JSON document and one event log per job,
under TUNELAB_HOME/server/jobs/. The documents are the queue (created order), so queued and
running jobs survive a restart; the event log is append-only, so event ids and their order
never change under a paginating client.

Shapes follow OpenAI's `fine_tuning.job` and `fine_tuning.job.event` objects.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from pathlib import Path
from typing import Any

from tunelab import home
from tunelab.server.errors import not_found
from tunelab.server.files import _write_json

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
ORGANIZATION = "org-tunelab-local"


def new_job_id() -> str:
    return "ftjob-" + secrets.token_hex(12)


class JobStore:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root or home.home() / "server" / "jobs"
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._event_counts: dict[str, int] = {}  # lines in each event log, counted once

    def _doc_path(self, job_id: str) -> Path:
        return self.root / f"{job_id}.json"

    def _log_path(self, job_id: str) -> Path:
        return self.root / f"{job_id}.events.jsonl"

    # documents ----------------------------------------------------------------------
    def create(self, doc: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            _write_json(self._doc_path(doc["id"]), doc)
            self.add_event(doc["id"], f"Created fine-tuning job: {doc['id']}")
        return doc

    def get(self, job_id: str) -> dict[str, Any]:
        path = self._doc_path(job_id)
        if not job_id.startswith("ftjob-") or "/" in job_id or not path.is_file():
            raise not_found("job", job_id)
        return json.loads(path.read_text(encoding="utf-8"))

    def update(self, job_id: str, **changes: Any) -> dict[str, Any]:
        with self._lock:
            doc = {**self.get(job_id), **changes}
            if changes.get("status") in TERMINAL and not doc.get("finished_at"):
                doc["finished_at"] = int(time.time())
            _write_json(self._doc_path(job_id), doc)
        return doc

    def all(self) -> list[dict[str, Any]]:
        docs = [json.loads(path.read_text(encoding="utf-8"))
                for path in self.root.glob("ftjob-*.json")]
        return sorted(docs, key=lambda doc: (doc["created_at"], doc["seq"]))

    def next_seq(self) -> int:
        return max((doc["seq"] for doc in self.all()), default=0) + 1

    # events -------------------------------------------------------------------------
    def add_event(self, job_id: str, message: str, *, level: str = "info",
                  type: str = "message", data: dict[str, Any] | None = None) -> None:
        with self._lock:
            path = self._log_path(job_id)
            if job_id not in self._event_counts:
                self._event_counts[job_id] = sum(1 for _ in path.open(encoding="utf-8")) \
                    if path.exists() else 0
            seq = self._event_counts[job_id] = self._event_counts[job_id] + 1
            event = {"object": "fine_tuning.job.event", "id": f"ftevent-{job_id[6:]}-{seq}",
                     "created_at": int(time.time()), "level": level, "message": message,
                     "type": type, "data": data or {}}
            with path.open("a", encoding="utf-8") as log:
                log.write(json.dumps(event, ensure_ascii=False) + "\n")

    def events(self, job_id: str) -> list[dict[str, Any]]:
        """Oldest first."""
        self.get(job_id)
        path = self._log_path(job_id)
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip()]


def job_object(doc: dict[str, Any]) -> dict[str, Any]:
    """The document as OpenAI's fine_tuning.job object."""
    hyper = doc["hyperparameters"]
    return {
        "object": "fine_tuning.job", "id": doc["id"], "created_at": doc["created_at"],
        "model": doc["model"], "training_file": doc["training_file"],
        "validation_file": doc.get("validation_file"), "status": doc["status"],
        "fine_tuned_model": doc.get("fine_tuned_model"), "finished_at": doc.get("finished_at"),
        "error": doc.get("error"), "trained_tokens": doc.get("trained_tokens"),
        "hyperparameters": hyper,
        "method": {"type": "supervised", "supervised": {"hyperparameters": hyper}},
        "organization_id": ORGANIZATION, "result_files": [], "seed": doc.get("seed"),
        "estimated_finish": None, "integrations": [], "metadata": doc.get("metadata"),
        "user_provided_suffix": doc.get("suffix"),
    }


def page(items: list[dict[str, Any]], *, after: str | None, limit: int) -> dict[str, Any]:
    """OpenAI's cursor page: items after the one whose id is `after`, `limit` of them."""
    if after:
        ids = [item["id"] for item in items]
        items = items[ids.index(after) + 1:] if after in ids else []
    chunk = items[:limit]
    return {"object": "list", "data": chunk, "has_more": len(items) > len(chunk),
            "first_id": chunk[0]["id"] if chunk else None,
            "last_id": chunk[-1]["id"] if chunk else None}
