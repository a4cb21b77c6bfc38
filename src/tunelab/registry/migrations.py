"""Append-only, numbered schema migrations. Never edit a shipped one: add the next number.

    1  the tables: jobs, events, metrics, files, checkpoints
    2  one metric vocabulary: old local names (loss, val_loss, lr, tokens, ...) renamed to
       OpenAI's in metrics rows, checkpoints and job summaries (registry/metrics.py)
"""

from __future__ import annotations

import sqlite3

from tunelab.registry.metrics import LEGACY_STEP_NAMES, LEGACY_SUMMARY_NAMES, VALID_LOSS


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


MIGRATIONS: list[tuple[int, str]] = [
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
]


def current_version(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA user_version").fetchone()[0]


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to the newest migration; returns the version reached."""
    version = current_version(conn)
    for number, script in MIGRATIONS:
        if number <= version:
            continue
        with conn:
            conn.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")
        version = number
    return version
