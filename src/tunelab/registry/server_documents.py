"""The documents `tunelab serve` kept before the registry held its jobs (migration 3).

Up to then the server wrote, under TUNELAB_HOME/server/:
    jobs/<job id>.json            a fine-tuning job as the client sees it (status, file ids,
                                  hyperparameters, metadata, seq ordering same-second jobs)
    jobs/<job id>.events.jsonl    its OpenAI event objects, oldest first
    files/<file id>.json          an upload's metadata; the bytes are files/<file id>.jsonl

`import_documents` reads them once into the registry, inside migration 3's transaction. A
job the local trainer had already registered (the worker ran it) becomes one row: the
document's status, error and file ids win, because the document was the server's queue (a
job paused by a shutdown is `running` there and `cancelled` in the trainer's row), and the
two event lists become one, in time order. The documents are left where they are, read by
nothing: nothing is lost if this code ever needs to run again. The bytes stay where the
server reads them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

from tunelab.registry.metrics import TRAINED_TOKENS

log = logging.getLogger("tunelab.registry")

SERVER = "server"  # a job's origin and a file's endpoint when `tunelab serve` holds them


def import_documents(conn: sqlite3.Connection, home: Path) -> None:
    """Copy the server's job and file documents under `home` into the registry."""
    for meta in _documents(home / SERVER / "files", "file-*.json"):
        _import_file(conn, meta, home / SERVER / "files" / f"{meta['id']}.jsonl")
    jobs_dir = home / SERVER / "jobs"
    docs = _documents(jobs_dir, "ftjob-*.json")
    for doc in sorted(docs, key=lambda doc: (doc.get("created_at", 0), doc.get("seq", 0))):
        _import_job(conn, doc, home)
        _merge_events(conn, doc["id"], _event_lines(jobs_dir / f"{doc['id']}.events.jsonl"))


def _documents(folder: Path, pattern: str) -> list[dict[str, Any]]:
    docs = []
    for path in sorted(folder.glob(pattern)) if folder.is_dir() else []:
        try:
            docs.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):  # half-written by a crash: left on disk, reported
            log.warning("could not read %s; left as it is", path)
    return [doc for doc in docs if isinstance(doc, dict) and doc.get("id")]


def _event_lines(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:  # a torn last line from a crash mid-append
            log.warning("skipped an unreadable line in %s", path)
    return events


def _import_file(conn: sqlite3.Connection, meta: dict[str, Any], data: Path) -> None:
    sha = hashlib.sha256(data.read_bytes()).hexdigest() if data.is_file() else ""
    conn.execute("INSERT OR IGNORE INTO files (id, provider, endpoint, sha256, filename, bytes, "
                 "purpose, created_at, status) VALUES (?, 'local', ?, ?, ?, ?, ?, ?, ?)",
                 (meta["id"], SERVER, sha, meta.get("filename"), meta.get("bytes"),
                  meta.get("purpose"), float(meta.get("created_at") or 0),
                  meta.get("status") or "processed"))


def _dumps(value: Any) -> str | None:
    return json.dumps(value) if value is not None else None


def _import_job(conn: sqlite3.Connection, doc: dict[str, Any], home: Path) -> None:
    created = float(doc.get("created_at") or 0)
    client_fields = {  # what the client asked for and was shown: the document's values
        "status": doc.get("status") or "queued", "suffix": doc.get("suffix"),
        "training_file": doc.get("training_file"),
        "validation_file": doc.get("validation_file"),
        "fine_tuned_model": doc.get("fine_tuned_model"), "error_json": _dumps(doc.get("error")),
        "hyperparameters_json": _dumps(doc.get("hyperparameters")),
        "metadata_json": _dumps(doc.get("metadata")), "origin": SERVER,
        "created_at": created,
        "finished_at": float(doc["finished_at"]) if doc.get("finished_at") else None}
    existing = conn.execute("SELECT metrics_json, updated_at FROM jobs WHERE id = ?",
                            (doc["id"],)).fetchone()
    if existing is None:
        run_dir = home / "runs" / doc["id"]
        row = {**client_fields, "id": doc["id"], "provider": "local",
               "base_model": doc.get("model"), "config_json": json.dumps(doc.get("config") or {}),
               "metrics_json": json.dumps(_summary({}, doc)),
               "run_dir": str(run_dir) if run_dir.is_dir() else None,
               "updated_at": client_fields["finished_at"] or created}
        conn.execute(f"INSERT INTO jobs ({', '.join(row)}) "
                     f"VALUES ({', '.join(':' + name for name in row)})", row)
        return
    metrics = _summary(json.loads(existing[0] or "{}"), doc)
    row = {**client_fields, "metrics_json": json.dumps(metrics), "id": doc["id"]}
    sets = ", ".join(f"{name} = :{name}" for name in row if name != "id")
    conn.execute(f"UPDATE jobs SET {sets} WHERE id = :id", row)


def _summary(metrics: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    """The trainer's summary, with the document's trained_tokens when it has none."""
    if doc.get("trained_tokens") is not None and metrics.get(TRAINED_TOKENS) is None:
        return {**metrics, TRAINED_TOKENS: doc["trained_tokens"]}
    return metrics


def _merge_events(conn: sqlite3.Connection, job_id: str, legacy: list[dict[str, Any]]) -> None:
    """One event list: the trainer's rows and the document's log, renumbered in time order."""
    if not legacy:
        return
    rows = [(row[0], row[1], row[2], row[3], row[4]) for row in conn.execute(
        "SELECT created_at, level, type, message, data_json FROM events WHERE job_id = ? "
        "ORDER BY seq", (job_id,))]
    rows += [(float(event.get("created_at") or 0), event.get("level") or "info",
              event.get("type") or "message", str(event.get("message") or ""),
              _dumps(event.get("data") or None)) for event in legacy]
    rows.sort(key=lambda row: row[0])  # stable: same-time events keep their order
    conn.execute("DELETE FROM events WHERE job_id = ?", (job_id,))
    conn.executemany("INSERT INTO events (job_id, seq, created_at, level, type, message, "
                     "data_json) VALUES (?, ?, ?, ?, ?, ?, ?)",
                     [(job_id, seq, *row) for seq, row in enumerate(rows, start=1)])
