"""Where tunelab keeps its state: TUNELAB_HOME (default ~/.tunelab).

Tests always point TUNELAB_HOME at a temp dir. Nothing here creates anything until asked.
"""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """The state folder, created on first use."""
    root = Path(os.environ.get("TUNELAB_HOME") or Path.home() / ".tunelab").expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def runs_dir() -> Path:
    path = home() / "runs"
    path.mkdir(exist_ok=True)
    return path


def cache_dir() -> Path:
    """Converted models and tokenizer tables. TUNELAB_CACHE_DIR may move it (tests share one)."""
    override = os.environ.get("TUNELAB_CACHE_DIR")
    path = Path(override).expanduser() if override else home() / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def registry_path() -> Path:
    return home() / "registry.sqlite"


def load_dotenv_files() -> None:
    """Read keys from ./.env and TUNELAB_HOME/.env without overriding the real environment."""
    from dotenv import load_dotenv

    for candidate in (Path.cwd() / ".env", home() / ".env"):
        if candidate.is_file():
            load_dotenv(candidate, override=False)
