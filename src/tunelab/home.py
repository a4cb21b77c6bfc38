"""Where tunelab keeps its state: TUNELAB_HOME (default ~/.tunelab).

Tests always point TUNELAB_HOME at a temp dir. Nothing here creates anything until a caller
needs to write: `home()` only names the folder, so commands that never write state (`data
check`) work even when it cannot be created. Where a folder is needed and cannot be made,
the error is one line naming the path and the fix.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from functools import cache
from pathlib import Path

from tunelab.errors import UsageError

log = logging.getLogger("tunelab.home")


# A server keeps the home it was started with, for its requests and its worker, whatever
# the process's TUNELAB_HOME says later (one process may hold a server and a CLI).
_PINNED: contextvars.ContextVar[Path | None] = contextvars.ContextVar("tunelab_home",
                                                                      default=None)


def home() -> Path:
    """The state folder's path; not created here (see `folder`)."""
    pinned = _PINNED.get()
    if pinned is not None:
        return pinned
    return Path(os.environ.get("TUNELAB_HOME") or Path.home() / ".tunelab").expanduser()


@contextlib.contextmanager
def pinned(root: Path) -> Iterator[None]:
    """`home()` is `root` inside this block (this thread or task, and what it copies its
    context into)."""
    token = _PINNED.set(root)
    try:
        yield
    finally:
        _PINNED.reset(token)


MAX_NAME = 200  # characters of an outside id used as a file name (file systems allow 255)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def outside_name(value: str, *, what: str = "id") -> str:
    """An id that came from outside (a provider's file id or job id), as one file name in a
    folder of the home: the id itself when it is safe, else a one-line refusal. Refused:
    path separators, `.`/`..`, absolute paths, control characters, a drive letter, an
    empty or overlong id. The one gate where an outside id becomes a path (SECURITY.md,
    "What a provider may send")."""
    from tunelab.errors import ProviderError

    text = str(value)
    if (not text or len(text) > MAX_NAME or text in (".", "..") or "/" in text
            or "\\" in text or ":" in text or _CONTROL.search(text)
            or text.startswith((".", "-")) or os.path.isabs(text)):
        shown = _CONTROL.sub("?", text[:80]) + ("..." if len(text) > 80 else "")
        raise ProviderError(f"refused the {what} from the provider that cannot be a file name "
                            f"here: {shown!r}", code="unsafe_id",
                            fix="nothing was written; the provider's id must be a plain name "
                                "(no /, \\, .., control characters, at most "
                                f"{MAX_NAME} characters)")
    return text


def folder(path: Path, *, what: str = "TUNELAB_HOME") -> Path:
    """`path`, created if needed; UsageError (exit 2) naming it when it cannot be."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise UsageError(f"cannot create {path} ({what}): {reason}",
                         fix="set TUNELAB_HOME to a folder you can write to") from None
    return path


def runs_dir() -> Path:
    return folder(home() / "runs")


def cache_dir() -> Path:
    """Converted models and tokenizer tables. TUNELAB_CACHE_DIR may move it (tests share one).

    Everything in it can be rebuilt, so when TUNELAB_HOME cannot be created the cache falls
    back to a per-user temp folder instead of failing a command that needs no state.
    """
    override = os.environ.get("TUNELAB_CACHE_DIR")
    if override:
        return folder(Path(override).expanduser(), what="TUNELAB_CACHE_DIR")
    try:
        return folder(home() / "cache")
    except UsageError as error:
        return _fallback_cache(error.render())


@cache
def _fallback_cache(problem: str) -> Path:
    path = Path(tempfile.gettempdir()) / f"tunelab-cache-{os.getuid()}"
    log.warning("%s; caching in %s instead", problem, path)
    return folder(path, what="temp cache")


def registry_path() -> Path:
    return home() / "registry.sqlite"


def home_file(name: str) -> Path | None:
    """TUNELAB_HOME/name if it is a file this process can see, else None (no home yet, a
    file in the way, a folder it may not enter: all mean there is no such file)."""
    candidate = home() / name
    try:
        return candidate if candidate.is_file() else None
    except OSError:
        return None


def load_dotenv_files() -> None:
    """Read keys from ./.env and TUNELAB_HOME/.env without overriding the real environment."""
    from dotenv import load_dotenv

    for candidate in (Path.cwd() / ".env", home_file(".env")):
        if candidate is not None and candidate.is_file():
            load_dotenv(candidate, override=False)
