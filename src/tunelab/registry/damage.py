"""A registry that cannot be used, told as one line with the fix (RegistryError, exit 2).

sqlite reports a damaged file, a read-only one or a folder in the way as a sqlite3 error at
whichever statement first touches the bad part: at open for random bytes, at a query for a
corrupt page. `explain` turns those into RegistryError wherever they surface; `check` runs at
open so that a damaged file is refused before anything (`tunelab serve`) starts on it.

`PRAGMA quick_check` reads every page once but checks no index against its table. On this
machine (load 8, bench/registry_open_check.py) it took 1.2 ms for 10k metric rows (1.8 MB),
45 ms for 100k (18 MB) and 250 ms for 1M (178 MB), against 4.4, 112 and 920 ms for
integrity_check: cheap enough at every open for any registry a person accumulates, and it
is what catches a corrupt page in a table nothing reads at start.

A full disk is not damage. sqlite says SQLITE_FULL when a write finds no room, but the first
thing to fail on a full disk is usually the 32 KiB -shm file every WAL connection maps,
even for a read: SQLITE_IOERR_SHMSIZE, "disk I/O error" (tried on a full tmpfs). Both, and
any other I/O error on a disk with (next to) nothing free, are told as a full disk with
what tunelab keeps that can go; the registry itself is intact.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

from tunelab.errors import RegistryError

# The sqlite errors that describe the file, not our SQL: the rest (IntegrityError,
# ProgrammingError, ...) are bugs and keep their traceback.
FILE_ERRORS = (sqlite3.DatabaseError, sqlite3.OperationalError)

WRITABLE_FIX = "make it writable, or set TUNELAB_HOME to a folder you can write to"

# sqlite's words for a write that found no room: the database or its journal could not grow
# (SQLITE_FULL), or the -shm file could not (its only cause in practice: ENOSPC, a quota).
NO_ROOM = frozenset({"SQLITE_FULL", "SQLITE_IOERR_SHMSIZE"})
ALMOST_FULL = 1 << 20  # bytes: less free than this, and any I/O error is the full disk


def explain(path: Path, error: sqlite3.Error) -> RegistryError:
    """What `error` means for the registry at `path`, and what to do about it."""
    text = str(error)
    if is_folder(path):
        return RegistryError(f"the registry {path} is a folder, not a database file",
                             fix=f"move it aside (mv {path} {path}.old); tunelab then starts "
                                 "a new, empty registry")
    if "readonly" in text or "read-only" in text or (
            "unable to open" in text and not _writable(path.parent)):
        return read_only(path)
    if "locked" in text or "busy" in text:
        return RegistryError(f"the registry {path} is locked by another process ({text})",
                             fix="wait for the other tunelab command to finish, then retry")
    if _no_room(path, error):
        return disk_full(path)
    return damaged(path, text)


def disk_full(path: Path) -> RegistryError:
    return RegistryError(
        f"the disk holding the registry {path} is full (the registry itself is intact)",
        fix="free some space on it, then retry; tunelab's biggest files are the checkpoints "
            f"of old runs, in {path.parent / 'runs'}")


def _no_room(path: Path, error: sqlite3.Error) -> bool:
    name = getattr(error, "sqlite_errorname", "") or ""
    if name in NO_ROOM or "disk is full" in str(error):
        return True
    if not name.startswith("SQLITE_IOERR"):
        return False
    try:
        return shutil.disk_usage(path.parent).free < ALMOST_FULL
    except OSError:
        return False


def damaged(path: Path, detail: str) -> RegistryError:
    return RegistryError(
        f"the registry {path} is damaged ({detail})",
        fix=f"restore it from a backup, or move {path.name} (with any -wal/-shm beside it) "
            f"out of {path.parent}; tunelab then starts a new, empty registry")


def read_only(path: Path) -> RegistryError:
    if path.exists() and not os.access(path, os.W_OK):
        return RegistryError(f"the registry {path} is read-only", fix=WRITABLE_FIX)
    return RegistryError(f"the folder {path.parent} holding the registry is read-only "
                         "(sqlite writes its -wal and -shm files beside it)", fix=WRITABLE_FIX)


def check(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse a file whose pages do not read back as a database."""
    rows = conn.execute("PRAGMA quick_check(1)").fetchall()
    if [tuple(row) for row in rows] != [("ok",)]:
        raise damaged(path, str(rows[0][0]).splitlines()[0] if rows else "no check result")


def newer(path: Path, found: int, known: int) -> RegistryError:
    return RegistryError(
        f"the registry {path} was written by a newer tunelab (schema version {found}; this "
        f"tunelab knows up to {known})",
        fix="upgrade tunelab (pip install -U tunelab), or set TUNELAB_HOME to another folder")


def is_folder(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # a folder above it we may not enter: sqlite says so itself
        return False


def _writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK | os.X_OK)
