"""Write a dataset file so that nothing the user had is lost.

The output goes to a temp file next to the target and is renamed over it only when every
example has been written: an error halfway leaves the old file (if any) untouched, and an
existing file is replaced only when the caller passes force (the CLI's --force).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from tunelab.errors import UsageError


def refuse_existing(path: Path, force: bool) -> None:
    if path.exists() and not force:
        raise UsageError(f"{path} already exists", fix="choose another name or pass --force")
    if path.is_dir():
        raise UsageError(f"{path} is a directory", fix="name an output file")


@contextlib.contextmanager
def atomic_text(path: Path, force: bool = False) -> Iterator[IO[str]]:
    """A text handle whose content appears at `path` only if the block finishes."""
    refuse_existing(path, force)
    if not path.parent.is_dir():
        raise UsageError(f"{path.parent} does not exist", fix="create the folder first")
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                             suffix=".tmp")
    os.chmod(temporary, _mode_for(path))  # mkstemp makes 0600; the file should look normal
    try:
        with open(descriptor, "w", encoding="utf-8", newline="") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def _mode_for(path: Path) -> int:
    """The replaced file's mode, or what open() would give a new file under the umask."""
    if path.exists():
        return path.stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask
