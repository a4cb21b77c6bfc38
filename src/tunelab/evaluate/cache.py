"""Answers already paid for: SQLite in TUNELAB_HOME/cache/answers.sqlite.

The key is a hash of (model identity, the exact messages, the generation settings), so a
re-run of a comparison asks no model twice, and changing any setting asks again.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from tunelab import home

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    key        TEXT PRIMARY KEY,
    model      TEXT NOT NULL,
    value_json TEXT NOT NULL,
    created_at REAL NOT NULL
)
"""


def cache_path() -> Path:
    return home.folder(home.home() / "cache") / "answers.sqlite"


def cache_key(model: str, request: Any, settings: dict[str, Any]) -> str:
    blob = json.dumps([model, request, settings], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class AnswerCache:
    """get/put JSON values by key; counts hits and misses for the report."""

    def __init__(self, path: Path | None = None) -> None:
        self._conn = sqlite3.connect(path or cache_path(), timeout=30, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(_SCHEMA)
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> dict[str, Any] | None:
        row = self._conn.execute("SELECT value_json FROM answers WHERE key = ?",
                                 (key,)).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        return json.loads(row[0])

    def put(self, key: str, model: str, value: dict[str, Any]) -> None:
        self._conn.execute("INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?)",
                           (key, model, json.dumps(value, ensure_ascii=False), time.time()))

    def close(self) -> None:
        self._conn.close()


class NoCache(AnswerCache):
    """The same interface, remembering nothing (`--no-cache`)."""

    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> dict[str, Any] | None:
        self.misses += 1
        return None

    def put(self, key: str, model: str, value: dict[str, Any]) -> None:
        return None

    def close(self) -> None:
        return None
