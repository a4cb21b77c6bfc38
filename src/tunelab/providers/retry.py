"""How long a provider call keeps trying, and how each retry is told to whoever is watching.

The SDKs' own retry loops are silent and unbounded in total time (OpenAI's retries 5 times
per request, and a lookup after a failed create retried again around it: about 3 minutes
before "cannot reach"). Providers turn SDK retries off and retry here instead, so that:

- every retry is reported as it happens, through `RetryPolicy.on_retry` (the CLI prints one
  line per retry; nothing below the CLI prints);
- `RetryPolicy.timeout` (the `--timeout` flag) bounds one operation, retries included.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from tunelab.errors import TransientProviderError

DEFAULT_ATTEMPTS = 6  # as the openai SDK's default: one try and 5 retries
T = TypeVar("T")


@dataclass(frozen=True)
class RetryNotice:
    """One retry about to happen: what failed, which attempt it was, and the wait before
    the next one."""

    provider: str
    what: str  # the operation, e.g. "uploading train.jsonl"
    problem: str  # the failure as one line: "[connection_error] cannot reach openai: ..."
    attempt: int  # the attempt that failed, from 1
    attempts: int  # the most attempts this operation makes
    wait_s: float

    def render(self) -> str:
        return (f"{self.what}: {self.problem} (attempt {self.attempt} of {self.attempts}; "
                f"retrying in {self.wait_s:.1f}s)")


OnRetry = Callable[[RetryNotice], None]


@dataclass(frozen=True)
class RetryPolicy:
    """`timeout`: seconds one operation may take, retries included (None: `attempts` alone
    bound it). `on_retry` hears of every retry before its wait."""

    timeout: float | None = None
    on_retry: OnRetry | None = None


def backoff(attempt: int) -> float:
    """Seconds to wait after failed attempt number `attempt` (from 1): 0.5, 1, 2, ... 30."""
    return min(30.0, 0.5 * 2 ** (attempt - 1))


class Attempts:
    """The attempts of one operation. Call `failed(error)` after each transient failure:
    it waits before the next attempt, or re-raises when attempts or time are used up."""

    def __init__(self, policy: RetryPolicy, *, provider: str, what: str, attempts: int,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.policy, self.provider, self.what = policy, provider, what
        self.limit, self.sleep = max(1, attempts), sleep
        self.number = 1
        self.started = time.monotonic()

    def run(self, send: Callable[[], T]) -> T:
        """`send` (a call safe to repeat) until it stops failing transiently."""
        while True:
            try:
                return send()
            except TransientProviderError as error:
                self.failed(error)

    def run_once(self, send: Callable[[], T], find: Callable[[], T | None]) -> T:
        """A create, sent once: after a failure, first `find` what the lost call may have
        made (the answer may be what was lost) and adopt it instead of sending again. A
        `find` that fails is retried like the send: resending before we know would risk a
        duplicate."""
        tried = False
        while True:
            try:
                if tried:
                    found = find()
                    if found is not None:
                        return found
                tried = True
                return send()
            except TransientProviderError as error:
                self.failed(error)

    def failed(self, error: TransientProviderError) -> None:
        wait = error.retry_after if error.retry_after is not None else backoff(self.number)
        left = self._time_left()
        if self.number >= self.limit or (left is not None and left <= 0):
            raise self._gave_up(error) from None
        if left is not None:
            wait = min(wait, left)
        if self.policy.on_retry is not None:
            self.policy.on_retry(RetryNotice(self.provider, self.what, error.message,
                                             self.number, self.limit, wait))
        self.sleep(wait)
        self.number += 1

    def _time_left(self) -> float | None:
        if self.policy.timeout is None:
            return None
        return self.policy.timeout - (time.monotonic() - self.started)

    def _gave_up(self, error: TransientProviderError) -> TransientProviderError:
        """The last error, saying how many attempts were made (when more than one)."""
        if self.number == 1:
            return error
        said = error.message.removeprefix(f"[{error.code}] ") if error.code else error.message
        return TransientProviderError(
            f"{said} (gave up after {self.number} attempts in "
            f"{time.monotonic() - self.started:.0f}s)", code=error.code,
            fix=(error.fix or "retry") + "; --timeout SECONDS sets how long to keep trying",
            retry_after=error.retry_after)
