"""How a provider spoken to through an official SDK calls it: the one home of that plumbing.

`SdkCalls` is mixed into the OpenAI-compatible, Together and Fireworks providers. Each one
supplies only what differs:

- `_connect(key)`: its SDK's client, with the SDK's own retries off (ours, in
  tunelab.providers.retry, report each one and keep to --timeout);
- `_api_errors()`: its SDK's error class and the map (tunelab.providers.sdk_errors) that
  turns one into a TunelabError with the key scrubbed;
- `_chat_arguments(options)`, where its chat takes more than OpenAI's arguments (all three
  SDKs answer chat as OpenAI's `chat.completions.create` does).

What they share: the key is resolved before any call is tried (a missing key is named,
never retried); a call safe to repeat is retried while it fails transiently; a create is
sent exactly once, a lost answer adopted by finding what it made. The client holds the key,
so a provider's `__repr__` never shows it.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from tunelab.errors import TunelabError
from tunelab.providers.base import Capabilities, ChatOptions, Reply
from tunelab.providers.profiles import Profile, resolve_key
from tunelab.providers.retry import DEFAULT_ATTEMPTS, Attempts, RetryPolicy
from tunelab.providers.sdk_errors import public_endpoint, scrub, scrub_json

T = TypeVar("T")
ErrorMap = Callable[..., TunelabError]  # sdk_errors.from_openai and its siblings


class SdkCalls:
    """The calls of one provider through its SDK. The provider sets `profile` (its name,
    key and capabilities), calls `_calls_to` in its __init__, and defines `_connect` and
    `_api_errors`."""

    profile: Profile
    base_url: str
    _address: str
    _retry: RetryPolicy
    _sleep: Callable[[float], None]
    attempts = DEFAULT_ATTEMPTS  # for calls safe to repeat
    create_attempts = 8  # for creates: each retry first looks for what was made
    _key: str | None = None
    _sdk: Any = None

    @property
    def name(self) -> str:
        return self.profile.name

    @property
    def capabilities(self) -> Capabilities:
        return self.profile.capabilities

    def _calls_to(self, address: str, retry: RetryPolicy,
                  sleep: Callable[[float], None]) -> None:
        """Where the SDK is pointed, and how its calls retry. What is stored and printed,
        `base_url`, is the address without user:password@ (item 8, issue 26)."""
        self._address, self.base_url = address, public_endpoint(address)
        self._retry, self._sleep = retry, sleep

    def _connect(self, key: str) -> Any:
        """The SDK's client for `key`, with the SDK's retries off."""
        raise NotImplementedError

    def _api_errors(self) -> tuple[type[Exception], ErrorMap]:
        """The SDK's error class, and the map from it to a TunelabError."""
        raise NotImplementedError

    @property
    def _client(self) -> Any:
        """The SDK's client, built (and the key read) on the first call, so a dry run needs
        neither; a provider that wants the key at once reads this in its __init__."""
        if self._sdk is None:
            self._key = resolve_key(self.profile)
            self._sdk = self._connect(self._key)
        return self._sdk

    def _call(self, send: Callable[[], T]) -> T:
        """`send` once, the SDK's error mapped to tunelab's (scrubbed of the key)."""
        self._client  # noqa: B018 - the key first: a missing one is named, never retried
        api_error, mapped = self._api_errors()
        try:
            return send()
        except api_error as error:
            raise mapped(error, provider=self.name, key=self._key) from None

    def _attempts(self, what: str, limit: int) -> Attempts:
        return Attempts(self._retry, provider=self.name, what=what, attempts=limit,
                        sleep=self._sleep)

    def _retrying(self, what: str, send: Callable[[], T]) -> T:
        """A call safe to repeat (a read, a cancel, a chat), retried while it fails
        transiently."""
        return self._attempts(what, self.attempts).run(lambda: self._call(send))

    def _exactly_once(self, what: str, send: Callable[[], T],
                      find: Callable[[], T | None]) -> T:
        """A create, sent once (Attempts.run_once): after a failure, what it may have made
        is found (`find`, None when nothing) and adopted before anything is sent again."""
        return self._attempts(what, self.create_attempts).run_once(
            lambda: self._call(send), lambda: self._call(find))

    def chat(self, model: str, messages: list[dict[str, Any]],
             options: ChatOptions = ChatOptions()) -> Reply:
        arguments = self._chat_arguments(options)
        started = time.perf_counter()
        answer = self._retrying(f"asking {model}", lambda: self._client.chat.completions.create(
            model=model, messages=messages, **arguments))
        usage = answer.usage
        # An answer may echo the key (a prompt injection, a logging proxy): scrubbed like
        # every text that leaves a provider call.
        return Reply(text=scrub(answer.choices[0].message.content or "", self._key),
                     model=answer.model or model, latency_s=time.perf_counter() - started,
                     prompt_tokens=usage.prompt_tokens if usage else None,
                     completion_tokens=usage.completion_tokens if usage else None)

    def _chat_arguments(self, options: ChatOptions) -> dict[str, Any]:
        return options.openai_arguments()


def scrubbed_json(obj: Any, key: str | None, **options: Any) -> dict[str, Any]:
    """An SDK object as scrubbed JSON. A field of another type than declared makes pydantic
    warn with the value itself (`input_value='sk-...'`, or Together's batch_size "max"):
    such warnings are silenced, the value scrubbed."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return scrub_json(obj.model_dump(mode="json", **options), key)


def timestamp(value: Any) -> float | None:
    """An SDK's time (a datetime, or ISO 8601 text with or without Z) as epoch seconds;
    None for anything else."""
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, str) and value:
        with contextlib.suppress(ValueError):
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return None
