"""Append-only, numbered schema migrations. Never edit a shipped one: add the next number.

    1  the tables: jobs, events, metrics, files, checkpoints
    2  one metric vocabulary: old local names (loss, val_loss, lr, tokens, ...) renamed to
       OpenAI's in metrics rows, checkpoints and job summaries (registry/metrics.py)
    3  the server's jobs and files live here: jobs gain origin, hyperparameters, metadata and
       seq (creation order); files gain status; the job and file documents `tunelab serve`
       kept under TUNELAB_HOME/server are imported (registry/server_documents.py)
    4  a job's config is typed by its kind (registry/job_config.py): jobs gain config_kind,
       read from the shape each row's config_json already has; no JSON is rewritten
    5  run folders and checkpoint paths under the home become relative to it
       (registry/home_paths.py), so a copied or moved home names its own runs; a home
       already moved is recognised by the run folders tunelab placed (runs/<job id>)

A registry whose version is above the last number here was written by a newer tunelab: it
is refused (RegistryError naming both versions), never used half-understood.

A step is SQL text, or a Python function of the connection and the home folder (the folder
holding the database) for what SQL cannot do, such as reading files. Either runs in one
transaction with its version bump.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from tunelab.registry import damage, home_paths, server_documents
from tunelab.registry.metrics import LEGACY_STEP_NAMES, LEGACY_SUMMARY_NAMES, VALID_LOSS

PythonStep = Callable[[sqlite3.Connection, Path | None], None]
Step = str | PythonStep


def _rename_json_keys(table: str, column: str, names: dict[str, str]) -> str:
    """SQL that renames keys of a JSON column, leaving rows without the old key alone."""
    statements = []
    for old, new in names.items():
        statements.append(
            f"UPDATE {table} SET {column} = json_remove(json_set({column}, '$.{new}', "
            f"json_extract({column}, '$.{old}')), '$.{old}') "
            f"WHERE json_type({column}, '$.{old}') IS NOT NULL;")
    return "\n".join(statements)


def _vocabulary_migration() -> str:
    # A local run always evaluated the whole validation file: its val_loss is both.
    full_valid = ("UPDATE metrics SET data_json = json_set(data_json, '$.full_valid_loss', "
                  "json_extract(data_json, '$.val_loss')) "
                  "WHERE json_type(data_json, '$.val_loss') IS NOT NULL;")
    checkpoint_names = {"loss": "train_loss", "val_loss": VALID_LOSS}
    return "\n".join([full_valid, _rename_json_keys("metrics", "data_json", LEGACY_STEP_NAMES),
                      _rename_json_keys("checkpoints", "metrics_json", checkpoint_names),
                      _rename_json_keys("jobs", "metrics_json", LEGACY_SUMMARY_NAMES)])


def _server_jobs_and_files(conn: sqlite3.Connection, home: Path | None) -> None:
    for statement in ("ALTER TABLE jobs ADD COLUMN origin TEXT",
                      "ALTER TABLE jobs ADD COLUMN hyperparameters_json TEXT",
                      "ALTER TABLE jobs ADD COLUMN metadata_json TEXT",
                      "ALTER TABLE jobs ADD COLUMN seq INTEGER",
                      "ALTER TABLE files ADD COLUMN status TEXT NOT NULL DEFAULT 'processed'"):
        conn.execute(statement)
    if home is not None:
        server_documents.import_documents(conn, home)
    # Number every row in creation order; new rows take MAX(seq) + 1 (Registry.create_job).
    ordered = conn.execute("SELECT id FROM jobs ORDER BY created_at, rowid").fetchall()
    conn.executemany("UPDATE jobs SET seq = ? WHERE id = ?",
                     [(seq, row[0]) for seq, row in enumerate(ordered, start=1)])
    conn.execute("CREATE UNIQUE INDEX jobs_seq ON jobs(seq)")
    conn.execute("CREATE INDEX jobs_origin ON jobs(origin, status)")


# The kinds of the rows written before there were kinds. Each shape had one writer: a local
# run (provider "local": the trainer, the server) kept its TrainConfig, a migrate import its
# "migrate" state, a cloud job created or refreshed by tunelab its hyperparameters, seed,
# estimate and "local_files". A config that is empty stays without a kind; one that is not
# JSON too, so that its row is still reported as damaged when read, as before.
_CONFIG_KINDS = """
ALTER TABLE jobs ADD COLUMN config_kind TEXT;
UPDATE jobs SET config_kind = CASE
    WHEN json_valid(config_json) IS NOT 1 THEN NULL
    WHEN json_type(config_json) IS NOT 'object' THEN NULL
    WHEN NOT EXISTS (SELECT 1 FROM json_each(jobs.config_json)) THEN NULL
    WHEN provider = 'local' THEN 'local'
    WHEN json_type(config_json, '$.migrate') IS NOT NULL THEN 'imported'
    ELSE 'cloud' END;
"""


def _home_relative_paths(conn: sqlite3.Connection, home: Path | None) -> None:
    """Store the home's paths relative to it. A path under this home is cut to its part
    below it. A run folder tunelab placed itself (runs/<job id>, no --output-dir) under
    another folder is one of a home since copied or moved here, when that folder is here
    too: it becomes runs/<job id>, and its checkpoints follow it. The rest (a run's
    --output-dir elsewhere, a registry copied without its runs) stays as it was."""
    if home is None:
        return
    moved: dict[str, tuple[str, str]] = {}  # job id: (old run_dir, new run_dir)
    for job_id, run_dir, output_dir in conn.execute(
            "SELECT id, run_dir, CASE WHEN json_valid(config_json) THEN "
            "json_extract(config_json, '$.output_dir') END FROM jobs "
            "WHERE run_dir IS NOT NULL").fetchall():
        new = home_paths.stored(home, run_dir)
        old = Path(run_dir)
        if new == run_dir and old.is_absolute() and output_dir is None \
                and (old.parent.name, old.name) == ("runs", job_id) \
                and (home / "runs" / job_id).is_dir():
            new = f"runs/{job_id}"
        if new != run_dir:
            moved[job_id] = (run_dir, new)
            conn.execute("UPDATE jobs SET run_dir = ? WHERE id = ?", (new, job_id))
    for job_id, name, path in conn.execute(
            "SELECT job_id, name, path FROM checkpoints WHERE path IS NOT NULL").fetchall():
        new = home_paths.stored(home, path)
        if new == path and job_id in moved:
            old_run, new_run = moved[job_id]
            if Path(path).is_relative_to(old_run):  # else kept outside its run folder
                new = (Path(new_run) / Path(path).relative_to(old_run)).as_posix()
        if new != path:
            conn.execute("UPDATE checkpoints SET path = ? WHERE job_id = ? AND name = ?",
                         (new, job_id, name))


MIGRATIONS: list[tuple[int, Step]] = [
    (1, """
    CREATE TABLE jobs (
        id               TEXT PRIMARY KEY,
        provider         TEXT NOT NULL,
        endpoint         TEXT,
        status           TEXT NOT NULL,
        native_status    TEXT,
        base_model       TEXT,
        fine_tuned_model TEXT,
        suffix           TEXT,
        training_file    TEXT,
        validation_file  TEXT,
        config_json      TEXT NOT NULL DEFAULT '{}',
        metrics_json     TEXT NOT NULL DEFAULT '{}',
        error_json       TEXT,
        run_dir          TEXT,
        created_at       REAL NOT NULL,
        updated_at       REAL NOT NULL,
        finished_at      REAL
    );
    CREATE INDEX jobs_created ON jobs(created_at);
    CREATE TABLE events (
        job_id     TEXT NOT NULL REFERENCES jobs(id),
        seq        INTEGER NOT NULL,
        created_at REAL NOT NULL,
        level      TEXT NOT NULL DEFAULT 'info',
        type       TEXT NOT NULL DEFAULT 'message',
        message    TEXT NOT NULL,
        data_json  TEXT,
        PRIMARY KEY (job_id, seq)
    );
    CREATE TABLE metrics (
        job_id    TEXT NOT NULL REFERENCES jobs(id),
        step      INTEGER NOT NULL,
        data_json TEXT NOT NULL,
        PRIMARY KEY (job_id, step)
    );
    CREATE TABLE files (
        id         TEXT NOT NULL,
        provider   TEXT NOT NULL,
        endpoint   TEXT NOT NULL,
        sha256     TEXT NOT NULL,
        filename   TEXT,
        bytes      INTEGER,
        purpose    TEXT,
        created_at REAL NOT NULL,
        PRIMARY KEY (endpoint, id)
    );
    CREATE INDEX files_sha ON files(endpoint, sha256);
    CREATE TABLE checkpoints (
        job_id     TEXT NOT NULL REFERENCES jobs(id),
        name       TEXT NOT NULL,
        kind       TEXT NOT NULL,
        step       INTEGER,
        epoch      REAL,
        path       TEXT,
        metrics_json TEXT NOT NULL DEFAULT '{}',
        created_at REAL NOT NULL,
        PRIMARY KEY (job_id, name)
    );
    """),
    (2, _vocabulary_migration()),
    (3, _server_jobs_and_files),
    (4, _CONFIG_KINDS),
    (5, _home_relative_paths),
]


def current_version(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA user_version").fetchone()[0]


def _file_of(conn: sqlite3.Connection) -> Path | None:
    """The main database file; None for an in-memory database."""
    for _, name, file in conn.execute("PRAGMA database_list").fetchall():
        if name == "main" and file:
            return Path(file)
    return None


def _home_of(conn: sqlite3.Connection) -> Path | None:
    """The folder holding the main database file; None for an in-memory database."""
    file = _file_of(conn)
    return file.parent if file else None


def _run_python_step(conn: sqlite3.Connection, number: int, step: PythonStep) -> None:
    if conn.in_transaction:
        conn.commit()
    # IMMEDIATE takes the write lock first, so two processes opening an old home at once
    # run the step once: the second sees the new version and skips it.
    conn.execute("BEGIN IMMEDIATE")
    try:
        if current_version(conn) < number:
            step(conn, _home_of(conn))
            conn.execute(f"PRAGMA user_version = {number}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to the newest migration; returns the version reached."""
    version, known = current_version(conn), MIGRATIONS[-1][0]
    if version > known:
        raise damage.newer(_file_of(conn) or Path(":memory:"), version, known)
    for number, step in MIGRATIONS:
        if number <= version:
            continue
        if isinstance(step, str):
            with conn:
                conn.executescript(f"BEGIN;\n{step}\nPRAGMA user_version = {number};\nCOMMIT;")
        else:
            _run_python_step(conn, number, step)
        version = number
    return version
