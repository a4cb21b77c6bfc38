"""The one user-facing error family. The CLI edge turns these into a line and an exit code.

    TunelabError                    exit 1 unless a subclass says otherwise
    ├── DataError                   exit 1: the user's data breaks a rule (line number and fix)
    ├── UsageError                  exit 2: bad flags, bad config, unreadable input
    │   ├── ConfigError             exit 2: a config that fails validation (every problem at once)
    │   └── RegistryError           exit 2: registry.sqlite is damaged, read-only, newer or a folder
    ├── ProviderError               exit 1: a provider (OpenAI, Vertex, ...) refused or failed
    │   ├── TransientProviderError  exit 1: worth retrying (network down, 408/409/429, 5xx)
    │   └── AuthError               exit 2: a key or credential is missing or refused
    └── NotFoundError               exit 2: a job, model, file or checkpoint that does not exist

Code below the CLI raises these and never prints or exits. SDK errors (openai's, google's)
become these in one place, tunelab.providers.sdk_errors, which keeps only the provider's code
and first line of message and scrubs keys and tokens out of it. Retrying code catches
TransientProviderError; every other ProviderError is final.
"""

from __future__ import annotations


class TunelabError(Exception):
    """Base of every error a user should see as one line, never as a traceback."""

    exit_code = 1

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def render(self) -> str:
        """One line: what went wrong, then what to do about it."""
        return f"{self.message} — {self.fix}" if self.fix else self.message

    def __str__(self) -> str:
        return self.render()


class DataError(TunelabError):
    """The dataset breaks a rule; `path` and `line` say where."""

    exit_code = 1

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 fix: str | None = None) -> None:
        where = f"{path}:{line}: " if path and line else (f"{path}: " if path else "")
        super().__init__(where + message, fix=fix)
        self.path, self.line = path, line


class UsageError(TunelabError):
    """Bad flags, a bad config, or input that cannot be read at all."""

    exit_code = 2


class ConfigError(UsageError):
    """A config that fails validation. `problems` lists every one, each naming its key."""

    def __init__(self, problems: list[str], *, source: str = "config") -> None:
        self.problems = problems
        super().__init__(f"invalid {source}: " + "; ".join(problems),
                         fix="fix the keys/flags named above (see `tunelab train --help`)")


class RegistryError(UsageError):
    """The registry (TUNELAB_HOME/registry.sqlite) cannot be used as it is; the fix says how
    to get going again (move it aside, restore a backup, make it writable, upgrade)."""


class ProviderError(TunelabError):
    """A provider refused or failed a request. Carries its code and message, never a key."""

    exit_code = 1

    def __init__(self, message: str, *, code: str | None = None, fix: str | None = None) -> None:
        super().__init__(f"[{code}] {message}" if code else message, fix=fix)
        self.code = code


class TransientProviderError(ProviderError):
    """A failure that may pass: the network, a busy provider (429) or its own fault (5xx).

    `retry_after` is the wait in seconds the provider asked for, when it named one.
    """

    def __init__(self, message: str, *, code: str | None = None, fix: str | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message, code=code, fix=fix)
        self.retry_after = retry_after


class AuthError(ProviderError):
    """A key or credential is missing or was refused."""

    exit_code = 2


class NotFoundError(TunelabError):
    """A job, model, file or checkpoint that does not exist."""

    exit_code = 2
