"""Read and write jobs, events, metrics, files and checkpoints.

Every write is its own short transaction so a training process, a server worker and a
`jobs watch` in another terminal can share the file. Rows are plain dataclasses; a job's
config is typed by its kind (registry/job_config.py), parsed here once when a row is read.

Two promises hold here, for every caller:
- A terminal status (succeeded, failed, cancelled) never changes: a status write to a
  finished job is ignored in the UPDATE itself, so a worker finishing its last step cannot
  overwrite a client's cancel. `reopen` is the one door back, for a resume.
- A registry that cannot be used (damaged, read-only, a folder, newer) is a RegistryError,
  one line with its fix (registry/damage.py), whichever statement finds out; one row that
  does not parse is skipped from lists with a warning naming it, never hides the others.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tunelab import home
from tunelab.errors import DataError, NotFoundError, RegistryError
from tunelab.registry import damage, home_paths
from tunelab.registry import job_config as configs
from tunelab.registry.job_config import JobConfig, JobKind
from tunelab.registry.metrics import MAX_STEP
from tunelab.registry.migrations import migrate

log = logging.getLogger("tunelab.registry")
Row = TypeVar("Row")

# OpenAI's vocabulary, shared by every provider.
STATUSES = ("validating_files", "queued", "running", "succeeded", "failed", "cancelled")
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
# A local job queued for the server's worker although the server did not create it (a CLI
# run resumed from the dashboard): its native status while it waits.
QUEUED_FOR_WORKER = "queued_for_worker"
# The native status of a job cancelled while its live run still finishes its step.
CANCELLING = "cancelling"


def new_job_id() -> str:
    """The id of a job tunelab makes (a provider's jobs keep the provider's ids)."""
    return f"ftjob-{secrets.token_hex(12)}"


@dataclass
class JobRecord:
    id: str
    provider: str
    status: str
    created_at: float
    updated_at: float
    endpoint: str | None = None
    native_status: str | None = None
    base_model: str | None = None
    fine_tuned_model: str | None = None
    suffix: str | None = None
    training_file: str | None = None
    validation_file: str | None = None
    # How the job was made, typed by its kind (None: the row keeps nothing).
    config: JobConfig | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    run_dir: str | None = None
    finished_at: float | None = None
    # Who made the row: "server" for `POST /v1/fine_tuning/jobs`; None for the CLI and imports.
    origin: str | None = None
    # What an OpenAI-shaped client asked for and is shown back (the server's jobs).
    hyperparameters: dict[str, Any] | None = None
    metadata: dict[str, str] | None = None
    # Creation order, assigned by the registry: it breaks ties between same-second jobs.
    seq: int | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def kind(self) -> JobKind | None:
        """local (trained here), cloud (created on a provider by tunelab) or imported (by
        `tunelab migrate inventory`); None when the row keeps no config."""
        return configs.kind_of(self.config) if self.config is not None else None

    def config_dict(self) -> dict[str, Any]:
        """The config as JSON values, {} for none: for showing and diffing it key by key."""
        return configs.as_dict(self.config)

    def to_dict(self) -> dict[str, Any]:
        """The row as JSON values (`jobs show --json`): the config as its schema dumps it."""
        return {**self.__dict__, "config": self.config_dict(), "kind": self.kind}


@dataclass
class Event:
    job_id: str
    seq: int
    created_at: float
    message: str
    level: str = "info"
    type: str = "message"
    data: dict[str, Any] | None = None


@dataclass
class FileRecord:
    """An uploaded file: remote (a provider's id at `endpoint`) or held here (the server's)."""

    id: str
    provider: str
    endpoint: str
    sha256: str
    filename: str | None
    bytes: int | None
    purpose: str | None
    created_at: float
    status: str = "processed"


@dataclass
class Checkpoint:
    job_id: str
    name: str
    kind: str
    created_at: float
    step: int | None = None
    epoch: float | None = None
    path: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


_JSON_COLUMNS = {"metrics": "metrics_json", "error": "error_json",
                 "hyperparameters": "hyperparameters_json", "metadata": "metadata_json"}
_NULLABLE_JSON = frozenset({"error", "hyperparameters", "metadata"})


def _job_from_row(row: sqlite3.Row, home_dir: Path) -> JobRecord:
    data = dict(row)
    data["run_dir"] = home_paths.resolved(home_dir, data["run_dir"])
    for attr, column in _JSON_COLUMNS.items():
        raw = data.pop(column)
        data[attr] = json.loads(raw) if raw else (None if attr in _NULLABLE_JSON else {})
    data["config"] = configs.parse(data.pop("config_kind"), data.pop("config_json"))
    return JobRecord(**data)


def _job_columns(job: JobRecord, home_dir: Path) -> dict[str, Any]:
    """The row of `job` (all but seq), column by column."""
    row = dict(job.__dict__)
    row.pop("seq")
    row["run_dir"] = home_paths.stored(home_dir, row["run_dir"])
    row["config_kind"], row["config_json"] = configs.dump(row.pop("config"))
    for attr, column in _JSON_COLUMNS.items():
        value = row.pop(attr)
        row[column] = json.dumps(value) if value is not None else None
    return row


def _checkpoint_from_row(row: sqlite3.Row, home_dir: Path) -> Checkpoint:
    return Checkpoint(row["job_id"], row["name"], row["kind"], row["created_at"], row["step"],
                      row["epoch"], home_paths.resolved(home_dir, row["path"]),
                      json.loads(row["metrics_json"]))


def _event_from_row(row: sqlite3.Row) -> Event:
    return Event(row["job_id"], row["seq"], row["created_at"], row["message"], row["level"],
                 row["type"], json.loads(row["data_json"]) if row["data_json"] else None)


def _metrics_from_row(row: sqlite3.Row) -> dict[str, Any]:
    return {"step": row["step"], **json.loads(row["data_json"])}


# TERMINAL as SQL, for the UPDATE that must leave a finished job alone.
_TERMINAL_SQL = ", ".join(f"'{status}'" for status in sorted(TERMINAL))


class Registry:
    """A handle on registry.sqlite. Safe to share between threads of one process."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # TUNELAB_HOME: run folders and checkpoints under it are stored relative to it
        # (registry/home_paths.py), so that a copied or moved home names its own.
        self.home_dir = path.parent
        self._lock = threading.RLock()
        home.folder(path.parent)
        if damage.is_folder(path):
            raise damage.explain(path, sqlite3.OperationalError("is a folder"))
        try:
            self._conn = sqlite3.connect(path, timeout=30, check_same_thread=False,
                                         isolation_level=None)
        except sqlite3.Error as error:
            raise damage.explain(path, error) from error
        try:
            with self._db() as conn:
                conn.row_factory = sqlite3.Row
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA busy_timeout=30000")
                damage.check(conn, path)
                migrate(conn)
        except BaseException:
            self._conn.close()
            raise

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """The connection, under the lock; sqlite's word for a bad file becomes RegistryError."""
        with self._lock:
            try:
                yield self._conn
            except damage.FILE_ERRORS as error:
                if type(error) not in damage.FILE_ERRORS:  # IntegrityError & co: our bug
                    raise
                raise damage.explain(self.path, error) from error

    def _write(self, sql: str, params: tuple | dict = ()) -> sqlite3.Cursor:
        with self._db() as conn:
            return conn.execute(sql, params)

    def _read(self, sql: str, params: tuple | dict = ()) -> list[sqlite3.Row]:
        with self._db() as conn:
            return conn.execute(sql, params).fetchall()

    def _parse(self, row: sqlite3.Row, build: Callable[[sqlite3.Row], Row], what: str) -> Row:
        """`build(row)`, or RegistryError naming the row when its stored JSON is damaged."""
        try:
            return build(row)
        except (ValueError, TypeError) as error:
            raise RegistryError(
                f"{what} in {self.path} is damaged ({type(error).__name__}: {error})",
                fix="the rest of the registry is unaffected; restore it from a backup to "
                    "recover this record") from error

    def _parse_all(self, rows: list[sqlite3.Row], build: Callable[[sqlite3.Row], Row],
                   what: Callable[[sqlite3.Row], str]) -> list[Row]:
        """Every row that parses; each one that does not is skipped with a warning."""
        parsed = []
        for row in rows:
            try:
                parsed.append(self._parse(row, build, what(row)))
            except RegistryError as error:
                log.warning("skipped: %s", error.message)
        return parsed

    # jobs -----------------------------------------------------------------------------
    def create_job(self, job: JobRecord) -> JobRecord:
        """Insert `job`; its seq is the next in creation order, whatever the clock says."""
        row = _job_columns(job, self.home_dir)
        columns = ", ".join([*row, "seq"])
        marks = ", ".join([*(f":{name}" for name in row),
                           "(SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs)"])
        with self._db() as conn:
            conn.execute(f"INSERT INTO jobs ({columns}) VALUES ({marks})", row)
            job.seq = conn.execute("SELECT seq FROM jobs WHERE id = ?", (job.id,)).fetchone()[0]
        return job

    def update_job(self, job_id: str, **changes: Any) -> JobRecord:
        """Change some fields of a job and return the row as it now is; a status moving to a
        terminal one stamps finished_at. A finished job keeps its status: a write that would
        change it changes nothing (the row comes back as it was)."""
        self._update(job_id, None, changes)
        return self.get_job(job_id)

    def transition(self, job_id: str, from_statuses: tuple[str, ...],
                   **changes: Any) -> JobRecord | None:
        """Change a job only while its status is one of `from_statuses`, in one statement,
        so two threads (a worker claiming a job, a client cancelling it) cannot both win.
        None when the job was not in one of those statuses (or does not exist). A finished
        job never moves here: see `reopen`."""
        if self._update(job_id, from_statuses, changes) == 0:
            return None
        return self.get_job(job_id)

    def reopen(self, job_id: str, from_statuses: tuple[str, ...] | None = None,
               **changes: Any) -> JobRecord | None:
        """The one way out of a terminal status: a resume continuing a finished job, or the
        server pausing one it stopped itself. Like `transition` otherwise."""
        if self._update(job_id, from_statuses, changes, reopen=True) == 0:
            return None
        return self.get_job(job_id)

    def _update(self, job_id: str, from_statuses: tuple[str, ...] | None,
                changes: dict[str, Any], *, reopen: bool = False) -> int:
        changes["updated_at"] = time.time()
        # A job finishing now is stamped; one already finished keeps its time.
        stamp = changes.get("status") in TERMINAL and "finished_at" not in changes
        sets, params = [], {"id": job_id}
        for name, value in changes.items():
            column = _JSON_COLUMNS.get(name, name)
            if name in _JSON_COLUMNS and value is not None:
                value = json.dumps(value)
            elif name == "config":
                column = "config_json"
                params["config_kind"], value = configs.dump(value)
                sets.append("config_kind = :config_kind")
            elif name == "run_dir":
                value = home_paths.stored(self.home_dir, value)
            sets.append(f"{column} = :{name}")
            params[name] = value
        if stamp:
            sets.append("finished_at = COALESCE(finished_at, :updated_at)")
        where = "id = :id"
        if from_statuses is not None:
            names = [f"from_{index}" for index in range(len(from_statuses))]
            params.update(zip(names, from_statuses, strict=True))
            where += f" AND status IN ({', '.join(':' + name for name in names)})"
        if "status" in changes and not reopen:
            # The invariant, in the statement itself: no read-then-write race can break it.
            where += f" AND (status NOT IN ({_TERMINAL_SQL}) OR status = :status)"
        return self._write(f"UPDATE jobs SET {', '.join(sets)} WHERE {where}", params).rowcount

    def _job(self, row: sqlite3.Row) -> JobRecord:
        return _job_from_row(row, self.home_dir)

    def find_job(self, job_id: str) -> JobRecord | None:
        rows = self._read("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return self._parse(rows[0], self._job, f"job {job_id}") if rows else None

    def get_job(self, job_id: str) -> JobRecord:
        job = self.find_job(job_id)
        if job is None:
            raise NotFoundError(f"no job {job_id!r} in the registry",
                                fix="run `tunelab jobs list` to see job ids")
        return job

    def find_job_by_model(self, model: str) -> JobRecord | None:
        rows = self._read("SELECT * FROM jobs WHERE fine_tuned_model = ? "
                          "ORDER BY created_at DESC LIMIT 1", (model,))
        return self._parse(rows[0], self._job, f"job {rows[0]['id']}") if rows else None

    def list_jobs(self, provider: str | None = None, limit: int = 100, *,
                  sweep: str | None = None, kind: JobKind | None = None) -> list[JobRecord]:
        """Newest first (a provider's own creation time for imported cloud jobs); only one
        provider's, one sweep's trials (metadata "sweep"), or one kind's, when asked."""
        where, params = [], []
        for column, value in (("provider", provider), ("config_kind", kind)):
            if value:
                where.append(f"{column} = ?")
                params.append(value)
        if sweep:
            # json_valid first: one damaged row must not fail the whole listing
            where.append("CASE WHEN json_valid(metadata_json) "
                         "THEN json_extract(metadata_json, '$.sweep') END = ?")
            params.append(sweep)
        sql = "SELECT * FROM jobs" + (" WHERE " + " AND ".join(where) if where else "")
        rows = self._read(sql + " ORDER BY created_at DESC, seq DESC LIMIT ?",
                          (*params, limit))
        return self._parse_all(rows, self._job, lambda row: f"job {row['id']}")

    def job_ids(self, *, origin: str | None = None, statuses: tuple[str, ...] | None = None,
                native_status: str | None = None) -> list[str]:
        """Ids of the jobs `origin` created (or with `native_status`), in creation order
        (seq), optionally only those in `statuses`. Ids only, so one unreadable row cannot
        hide the others."""
        sql, params = "SELECT id FROM jobs WHERE 1", []
        for column, value in (("origin", origin), ("native_status", native_status)):
            if value is not None:
                sql += f" AND {column} = ?"
                params.append(value)
        if statuses is not None:
            sql += f" AND status IN ({', '.join('?' for _ in statuses)})"
            params += statuses
        return [row["id"] for row in self._read(sql + " ORDER BY seq", tuple(params))]

    # events ---------------------------------------------------------------------------
    def add_event(self, job_id: str, message: str, *, level: str = "info",
                  type: str = "message", data: dict[str, Any] | None = None,
                  created_at: float | None = None) -> Event:
        with self._db() as conn:
            seq = conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM events "
                               "WHERE job_id = ?", (job_id,)).fetchone()[0]
            event = Event(job_id, seq, created_at or time.time(), message, level, type, data)
            conn.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (job_id, seq, event.created_at, level, type, message,
                          json.dumps(data) if data is not None else None))
        return event

    def list_events(self, job_id: str, after: int = 0, limit: int = 10_000) -> list[Event]:
        rows = self._read("SELECT * FROM events WHERE job_id = ? AND seq > ? "
                          "ORDER BY seq LIMIT ?", (job_id, after, limit))
        return self._parse_all(rows, _event_from_row,
                               lambda row: f"event {row['seq']} of job {job_id}")

    # metrics --------------------------------------------------------------------------
    def add_metrics(self, job_id: str, step: object, values: dict[str, Any]) -> None:
        """Record one step's metrics; a later write for the same step merges into it.

        The one check on what becomes a metric (a provider's events and result files, a
        local run): a step that is no whole number from 0 to MAX_STEP is refused
        (DataError); a NaN or infinite value is left out of the row, so what is stored
        is always JSON."""
        step = _metric_step(step)
        with self._db() as conn:
            rows = conn.execute("SELECT data_json FROM metrics WHERE job_id = ? AND step = ?",
                                (job_id, step)).fetchall()
            try:
                earlier = json.loads(rows[0][0]) if rows else {}
            except ValueError:  # a damaged row: this write replaces it
                earlier = {}
            conn.execute("INSERT OR REPLACE INTO metrics VALUES (?, ?, ?)",
                         (job_id, step, json.dumps(_finite({**earlier, **values}),
                                                   allow_nan=False)))

    def list_metrics(self, job_id: str, after_step: int | None = None) -> list[dict[str, Any]]:
        """The job's metric rows by step; with `after_step`, only the steps past it (a live
        view asks for what is new instead of reading every row again)."""
        rows = self._read("SELECT step, data_json FROM metrics WHERE job_id = ? AND step > ? "
                          "ORDER BY step", (job_id, -1 if after_step is None else after_step))
        return self._parse_all(rows, _metrics_from_row,
                               lambda row: f"metrics of step {row['step']} of job {job_id}")

    # files ----------------------------------------------------------------------------
    def record_file(self, *, file_id: str, provider: str, endpoint: str, sha256: str,
                    filename: str | None, size: int | None, purpose: str | None,
                    status: str = "processed", created_at: float | None = None) -> FileRecord:
        record = FileRecord(file_id, provider, endpoint, sha256, filename, size, purpose,
                            created_at or time.time(), status)
        self._write("INSERT OR REPLACE INTO files (id, provider, endpoint, sha256, filename, "
                    "bytes, purpose, created_at, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (record.id, record.provider, record.endpoint, record.sha256,
                     record.filename, record.bytes, record.purpose, record.created_at,
                     record.status))
        return record

    def find_file(self, endpoint: str, file_id: str) -> FileRecord | None:
        rows = self._read("SELECT * FROM files WHERE endpoint = ? AND id = ?",
                          (endpoint, file_id))
        return FileRecord(**dict(rows[0])) if rows else None

    def list_files(self, endpoint: str, purpose: str | None = None) -> list[FileRecord]:
        """The files recorded for `endpoint`, newest first."""
        sql, params = "SELECT * FROM files WHERE endpoint = ?", [endpoint]
        if purpose is not None:
            sql += " AND purpose = ?"
            params.append(purpose)
        rows = self._read(sql + " ORDER BY created_at DESC, id DESC", tuple(params))
        return [FileRecord(**dict(row)) for row in rows]

    def files_with_sha(self, endpoint: str, sha256: str) -> list[str]:
        """Remote file ids uploaded to `endpoint` with this content hash, newest first."""
        rows = self._read("SELECT id FROM files WHERE endpoint = ? AND sha256 = ? "
                          "ORDER BY created_at DESC", (endpoint, sha256))
        return [row["id"] for row in rows]

    def forget_file(self, endpoint: str, file_id: str) -> None:
        self._write("DELETE FROM files WHERE endpoint = ? AND id = ?", (endpoint, file_id))

    # checkpoints ----------------------------------------------------------------------
    def upsert_checkpoint(self, checkpoint: Checkpoint) -> None:
        self._write("INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (checkpoint.job_id, checkpoint.name, checkpoint.kind, checkpoint.step,
                     checkpoint.epoch, home_paths.stored(self.home_dir, checkpoint.path),
                     json.dumps(checkpoint.metrics),
                     checkpoint.created_at))

    def delete_checkpoint(self, job_id: str, name: str) -> None:
        self._write("DELETE FROM checkpoints WHERE job_id = ? AND name = ?", (job_id, name))

    def list_checkpoints(self, job_id: str) -> list[Checkpoint]:
        """The job's checkpoints whose folders still exist (a provider's, with no path on
        this machine, always count). Rows whose folder was deleted are left out, with a
        warning saying how many: every reader (the CLI, the server's model list, the
        worker deciding to resume) sees only what can be loaded."""
        rows = self._read("SELECT * FROM checkpoints WHERE job_id = ? ORDER BY step, name",
                          (job_id,))
        listed = self._parse_all(rows, lambda row: _checkpoint_from_row(row, self.home_dir),
                                 lambda row: f"checkpoint {row['name']} of job {job_id}")
        present = [row for row in listed if row.path is None or Path(row.path).is_dir()]
        if len(present) < len(listed):
            gone = sorted({row.name for row in listed} - {row.name for row in present})
            log.warning("%s: %d checkpoint(s) not listed, their folders were deleted: %s",
                        job_id, len(gone), ", ".join(gone))
        return present


def open_registry(path: Path | None = None) -> Registry:
    """Open (creating and migrating if needed) the registry under TUNELAB_HOME.

    Use it as a context manager, `with open_registry() as registry:`, so it is always closed.
    """
    return Registry(path or home.registry_path())


def _finite(values: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in values.items()
            if not (isinstance(value, float) and not math.isfinite(value))}


def _metric_step(step: object) -> int:
    """`step` as a metrics row's step: a whole number from 0 to MAX_STEP (a provider may
    send it as text: "3"), else DataError."""
    if isinstance(step, str):
        with contextlib.suppress(ValueError):
            step = float(step)
    if isinstance(step, float) and math.isfinite(step) and step.is_integer():
        step = int(step)
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= MAX_STEP:
        raise DataError(f"refused a metrics row with step {step!r}: a step is a whole number "
                        f"from 0 to {MAX_STEP:,}", fix="the row is not stored; the others are")
    return step
