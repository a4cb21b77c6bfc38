"""Files kept by content: TUNELAB_HOME/blobs/sha256/<hash><suffix>.

A download streams into blobs/partial/<name>.part while it is hashed, and is renamed to its
hash only once complete, so a blob that exists is whole: an interrupted download leaves a
.part file that the next attempt starts over, and a finished one is never fetched again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tunelab import home
from tunelab.providers.openai_compat import file_sha256
from tunelab.registry.job_config import PulledFile


@dataclass(frozen=True)
class Blob:
    sha256: str
    path: str
    bytes: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def root() -> Path:
    return home.home() / "blobs"


def stored(sha256: str, suffix: str) -> Path:
    return root() / "sha256" / f"{sha256}{suffix}"


def is_whole(blob: PulledFile) -> bool:
    """Whether a blob recorded earlier is still there, with its size."""
    path = Path(blob.path)
    return path.is_file() and path.stat().st_size == blob.bytes


def download(name: str, suffix: str, fetch: Callable[[Path], None]) -> Blob:
    """Run `fetch(path)` into a .part file (which it writes from the start: a .part left by
    a broken run starts over), then keep the bytes under their hash. `name` is the
    provider's file id: it becomes a file name only through home.outside_name."""
    partial = root() / "partial" / f"{home.outside_name(name, what='file id')}.part"
    partial.parent.mkdir(parents=True, exist_ok=True)
    fetch(partial)
    sha = file_sha256(partial)
    size = partial.stat().st_size
    target = stored(sha, suffix)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial.replace(target)
    return Blob(sha, str(target), size)
