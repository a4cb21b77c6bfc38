"""Checkpoint folders on disk: atomic writes, `latest`/`best` pointers, retention.

A checkpoint is written into a hidden temp folder, every file fsynced, then renamed into
place, and only then does the `latest` pointer move (itself a tiny file replaced
atomically). A kill at any instant therefore leaves `latest` naming a complete folder.
Pointers are files holding a folder name, never copies of the weights.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

POINTERS = ("latest", "best")
TEMP_PREFIX = ".tmp-"


def checkpoint_name(kind: str, step: int, epoch: int) -> str:
    return f"epoch-{epoch:03d}" if kind == "epoch" else f"step-{step:06d}"


def write_atomically(root: Path, name: str, fill: Callable[[Path], None]) -> Path:
    """Create root/name by filling a temp folder and renaming it; returns the final path."""
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f"{TEMP_PREFIX}{name}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    fill(staging)
    _fsync_tree(staging)
    final = root / name
    if final.exists():  # the same step saved again after a resume: replace it whole
        retired = root / f"{TEMP_PREFIX}old-{name}-{os.getpid()}"
        os.rename(final, retired)
        shutil.rmtree(retired, ignore_errors=True)
    os.rename(staging, final)
    _fsync_dir(root)
    return final


def set_pointer(root: Path, pointer: str, name: str) -> None:
    """Point `pointer` (latest/best) at checkpoint folder `name`, atomically."""
    staging = root / f"{TEMP_PREFIX}{pointer}-{os.getpid()}"
    with open(staging, "w", encoding="utf-8") as handle:
        handle.write(name + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(staging, root / pointer)
    _fsync_dir(root)


def read_pointer(root: Path, pointer: str) -> Path | None:
    """The folder a pointer names, or None if there is no such pointer or folder."""
    try:
        name = (root / pointer).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    folder = root / name
    return folder if name and folder.is_dir() else None


def candidates(root: Path) -> list[Path]:
    """The checkpoint folders a resume may start from, in the order to try them: the one
    `latest` names, then every other, newest first (a damaged latest falls back to these)."""
    latest = read_pointer(root, "latest")
    folders = [path for prefix in ("step", "epoch") for path in root.glob(f"{prefix}-*")
               if path.is_dir() and path != latest]
    folders.sort(key=lambda path: path.stat().st_mtime_ns, reverse=True)
    return ([latest] if latest else []) + folders


def prune(root: Path, prefix: str, keep: int) -> list[str]:
    """Delete all but the newest `keep` folders named prefix-*, sparing pointed-at ones."""
    protected = {path.name for path in (read_pointer(root, p) for p in POINTERS) if path}
    folders = sorted(path.name for path in root.glob(f"{prefix}-*") if path.is_dir())
    doomed = [name for name in folders[:-keep] if name not in protected] if keep else []
    for name in doomed:
        shutil.rmtree(root / name, ignore_errors=True)
    return doomed


def clean_partial(root: Path) -> None:
    """Remove temp folders a killed process left behind; they were never pointed at."""
    for path in root.glob(f"{TEMP_PREFIX}*"):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _fsync_tree(folder: Path) -> None:
    for dirpath, _dirnames, filenames in os.walk(folder):
        for filename in filenames:
            fd = os.open(os.path.join(dirpath, filename), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
