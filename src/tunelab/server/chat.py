"""Chat completions from local models, under the server's rules (issue 13).

- A `model` is a name from the server's catalogue (server/models.py), looked up, never
  resolved as a path: a client reaches only weights the registry recorded.
- One generation at a time (one CPU-bound forward pass answers faster than several fighting
  over the cores), at most `chat_queue` more waiting, each for at most `chat_wait_s`; past
  that a request gets a 503 with Retry-After instead of starving behind the others.
- The prompt must fit the model's context with room to answer; an unasked-for max_tokens is
  clamped to the room left, an explicit one that does not fit is a 400.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tunelab.errors import TunelabError
from tunelab.registry import Registry
from tunelab.server.errors import ApiError
from tunelab.server.models import Served, catalogue
from tunelab.server.settings import ServeSettings

log = logging.getLogger("tunelab.server")
DEFAULT_MAX_TOKENS = 256
SHOWN_NAME = 80  # characters of an unknown model name echoed back


class Busy(Exception):
    """Generation is taken and the queue is full, or a request waited its time out."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.message, self.retry_after = message, retry_after


class GenerationQueue:
    """One generation slot and at most `waiting` requests queued for it."""

    def __init__(self, waiting: int, wait_s: float) -> None:
        self._admitted = threading.BoundedSemaphore(waiting + 1)  # the running one, too
        self._slot = threading.Lock()
        self.wait_s = wait_s
        self.retry_after = max(1, math.ceil(wait_s))

    @contextmanager
    def slot(self) -> Iterator[None]:
        if not self._admitted.acquire(blocking=False):
            raise Busy("The server is busy: every chat queue place is taken", self.retry_after)
        try:
            if not self._slot.acquire(timeout=self.wait_s):
                raise Busy(f"The server is busy: no generation slot came free in "
                           f"{self.wait_s:g} s", self.retry_after)
            try:
                yield
            finally:
                self._slot.release()
        finally:
            self._admitted.release()


class ChatService:
    """The chat side of one app: its names, its queue, and completions under both."""

    def __init__(self, registry: Registry, settings: ServeSettings) -> None:
        self.registry, self.aliases = registry, settings.aliases
        self.queue = GenerationQueue(settings.chat_queue, settings.chat_wait_s)

    def models(self) -> list[dict[str, Any]]:
        return [served.object() for served in catalogue(self.registry, self.aliases).values()]

    def find(self, name: str) -> Served:
        """The served model `name` means; one 404 for every other string, saying nothing
        about why (no path is looked at, so there is nothing to say)."""
        served = catalogue(self.registry, self.aliases).get(name)
        if served is None:
            raise ApiError(404, f"The model {name[:SHOWN_NAME]!r} does not exist here: "
                                "GET /v1/models lists the models you can use",
                           code="model_not_found", param="model")
        return served

    def complete(self, served: Served, messages: list[dict[str, str]], *,
                 max_tokens: int | None, temperature: float, top_p: float, seed: int) -> Any:
        from tunelab.local.inference import load_chat_model

        with self.queue.slot():
            try:
                chat_model = load_chat_model(served.weights())
            except TunelabError as error:  # listed, but its files are gone or damaged
                log.error("model %s cannot be loaded: %s", served.id, error.render())
                raise ApiError(404, f"The model {served.id!r} is listed but its weights "
                                    "cannot be loaded; the server log says why",
                               code="model_not_found", param="model") from None
            context = chat_model.context_length
            prompt = chat_model.prompt(messages, limit=context)
            budget = completion_budget(len(prompt.ids), context=context, requested=max_tokens,
                                       whole=prompt.whole)
            return chat_model.complete_prompt(prompt.ids, max_new_tokens=budget,
                                              temperature=temperature, top_p=top_p, seed=seed)


def completion_budget(prompt_tokens: int, *, context: int | None, requested: int | None,
                      whole: bool = True) -> int:
    """How many tokens the answer may have: `requested` (else the default), within what
    the context leaves after the prompt. A prompt that leaves no room, or an explicit
    request that does not fit, is a 400 in OpenAI's words."""
    wanted = requested or DEFAULT_MAX_TOKENS
    if context is None:
        return wanted
    if prompt_tokens >= context:
        counted = f"{prompt_tokens}" if whole else f"at least {prompt_tokens}"
        raise ApiError(400, f"This model's maximum context length is {context} tokens. "
                            f"However, your messages resulted in {counted} tokens "
                            f"({counted} in the messages). Please reduce the length of the "
                            "messages.", code="context_length_exceeded", param="messages")
    if requested is not None and prompt_tokens + requested > context:
        raise ApiError(400, f"This model's maximum context length is {context} tokens. "
                            f"However, you requested {prompt_tokens + requested} tokens "
                            f"({prompt_tokens} in the messages, {requested} in the "
                            "completion). Please reduce the length of the messages or "
                            "completion.", code="context_length_exceeded", param="max_tokens")
    return min(wanted, context - prompt_tokens)


def completion_object(model: str, completion: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-" + secrets.token_hex(12), "object": "chat.completion",
        "created": int(time.time()), "model": model, "system_fingerprint": None,
        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                     "message": {"role": "assistant", "content": completion.text,
                                 "refusal": None}}],
        "usage": _usage(completion),
    }


def _usage(completion: Any) -> dict[str, int]:
    return {"prompt_tokens": completion.prompt_tokens,
            "completion_tokens": completion.completion_tokens,
            "total_tokens": completion.prompt_tokens + completion.completion_tokens}


def stream_chunks(model: str, completion: Any, *, include_usage: bool) -> Iterator[str]:
    """Server-sent events in OpenAI's chat.completion.chunk shape, ending with [DONE].

    The text is generated first and then sent word by word: the wire format is what clients
    rely on, and a local 135M model answers in about a second anyway.
    """
    base = {"id": "chatcmpl-" + secrets.token_hex(12), "object": "chat.completion.chunk",
            "created": int(time.time()), "model": model, "system_fingerprint": None}

    def event(delta: dict[str, Any], finish: str | None = None,
              usage: dict[str, int] | None = None) -> str:
        choices = [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish,
                                     "logprobs": None}]
        chunk = {**base, "choices": choices, **({"usage": usage} if usage else {})}
        return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"

    yield event({"role": "assistant", "content": ""})
    words = completion.text.split(" ")
    for index, word in enumerate(words):
        yield event({"content": word if index == 0 else " " + word})
    yield event({}, finish="stop")
    if include_usage:
        yield event({}, usage=_usage(completion))
    yield "data: [DONE]\n\n"
