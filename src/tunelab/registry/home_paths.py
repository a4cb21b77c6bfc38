"""Paths in the registry are kept relative to the home that holds it.

A run folder or checkpoint under TUNELAB_HOME (`runs/<job id>/...`) is stored as its path
from the home, and read back against the folder the registry is in, so a copied or moved
home names its own runs: nothing done on the copy touches the original. A path elsewhere (a
run's --output-dir outside the home) is stored as it is.

Writers hand over absolute paths and readers get absolute paths back: only the row knows.
"""

from __future__ import annotations

from pathlib import Path


def stored(home: Path, path: str | None) -> str | None:
    """`path` as a row keeps it: relative to `home` when it lies under it."""
    if not path or not Path(path).is_absolute():
        return path
    candidate = Path(path)
    for inside, root in ((candidate, home), (candidate.resolve(), home.resolve())):
        try:
            return inside.relative_to(root).as_posix()
        except ValueError:
            continue
    return path


def resolved(home: Path, path: str | None) -> str | None:
    """A stored path as a path here: a relative one is under `home`."""
    if not path or Path(path).is_absolute():
        return path
    return str(home / path)
