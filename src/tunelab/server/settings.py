"""What one `tunelab serve` process is allowed to do. Plain data, built by the CLI."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from tunelab.errors import UsageError

DEFAULT_MAX_UPLOAD = 512 * 1024 * 1024  # OpenAI's own per-file limit
# Any other body (JSON, a dashboard form): a chat as long as any served model's context is
# far under this (2 MiB is about 500k tokens of text).
DEFAULT_MAX_JSON = 2 * 1024 * 1024
DEFAULT_CHAT_QUEUE = 8  # chat requests that may wait while one generates
DEFAULT_CHAT_WAIT_S = 120.0  # how long one of them waits before a 503


@dataclass(frozen=True)
class ServeSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None  # compared in constant time, never logged
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD  # an upload's file (POST /v1/files)
    max_json_bytes: int = DEFAULT_MAX_JSON  # every other request body
    # Caps applied to every job, so a shared box (or a test) stays fast whatever clients ask.
    max_steps: int | None = None
    max_length: int | None = None
    run_worker: bool = True
    # Chat: one generation at a time, `chat_queue` more waiting at most `chat_wait_s` each.
    chat_queue: int = DEFAULT_CHAT_QUEUE
    chat_wait_s: float = DEFAULT_CHAT_WAIT_S
    # (old name, target) pairs: chat answers under the old name with the target's weights.
    aliases: tuple[tuple[str, str], ...] = ()

    def __repr__(self) -> str:  # the dataclass repr would show the key
        return f"ServeSettings(host={self.host!r}, port={self.port}, api_key=***)"


def bind_host(host: str) -> str:
    """The address as a socket takes it: `[::1]` (URL notation) is `::1`."""
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def url_host(host: str) -> str:
    """The address as a URL writes it: IPv6 in brackets."""
    return f"[{host}]" if ":" in host else host


def parse_aliases(values: list[str]) -> tuple[tuple[str, str], ...]:
    """`--alias OLD=TARGET` values as (old, target) pairs; each old name once."""
    pairs: dict[str, str] = {}
    for value in values:
        old, _, target = value.partition("=")
        old, target = old.strip(), target.strip()
        if not old or not target:
            raise UsageError(f"--alias {value!r}: expected OLD=JOB, e.g. "
                             "ft:gpt-4o-mini-2024-07-18:acme:natasha:AbC123=ftjob-...",
                             fix="give the old model name, '=', then a job id or model name")
        if old in pairs:
            raise UsageError(f"--alias {old}: given twice", fix="keep one --alias per old name")
        pairs[old] = target
    return tuple(pairs.items())


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything


def check_bind(settings: ServeSettings) -> None:
    """Refuse to expose the API beyond this machine without a key, and refuse a key no
    client could ever send (bearer tokens lose surrounding whitespace on the way)."""
    if settings.api_key is not None and settings.api_key != settings.api_key.strip():
        what = "blank" if not settings.api_key.strip() else "padded with whitespace"
        raise UsageError(f"the API key is {what}, so no client could ever send it",
                         fix="pass --api-key KEY (or set TUNELAB_SERVE_API_KEY) with no "
                             "spaces around it")
    if not settings.api_key and not is_loopback(settings.host):
        raise UsageError(f"refusing to listen on {settings.host} without an API key",
                         fix="pass --api-key KEY (or set TUNELAB_SERVE_API_KEY), "
                             "or bind to 127.0.0.1")
