"""What one `tunelab serve` process is allowed to do. Plain data, built by the CLI."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from tunelab.errors import UsageError

DEFAULT_MAX_UPLOAD = 512 * 1024 * 1024  # OpenAI's own per-file limit


@dataclass(frozen=True)
class ServeSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None  # compared in constant time, never logged
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD
    # Caps applied to every job, so a shared box (or a test) stays fast whatever clients ask.
    max_steps: int | None = None
    max_length: int | None = None
    run_worker: bool = True

    def __repr__(self) -> str:  # the dataclass repr would show the key
        return f"ServeSettings(host={self.host!r}, port={self.port}, api_key=***)"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything


def check_bind(settings: ServeSettings) -> None:
    """Refuse to expose the API beyond this machine without a key."""
    if not settings.api_key and not is_loopback(settings.host):
        raise UsageError(f"refusing to listen on {settings.host} without an API key",
                         fix="pass --api-key KEY (or set TUNELAB_SERVE_API_KEY), "
                             "or bind to 127.0.0.1")
