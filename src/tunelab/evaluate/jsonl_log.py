"""Append-only JSONL files that survive a kill: one whole line per write, flushed and
fsynced before the next request is sent, and a torn last line (the process died mid-write)
dropped before anything is appended. Golden sets' answer logs and `data pairs` output use it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def read_lines(path: Path) -> list[str]:
    """The file's whole lines (blank ones left out); a torn last line is cut from the file."""
    if not path.is_file():
        return []
    raw = path.read_bytes()
    whole = raw[:raw.rfind(b"\n") + 1]
    if len(whole) != len(raw):
        with path.open("r+b") as handle:
            handle.truncate(len(whole))
    return [line for line in whole.decode("utf-8").splitlines() if line.strip()]


def append(path: Path, value: dict[str, Any]) -> None:
    """Add one JSON line and make it durable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(value, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
