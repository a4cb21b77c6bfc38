"""Chat completions from local models: the embedded/base models and every local fine-tune.

A model name is anything `tunelab.local.weights` resolves: a local job's `ft:` name or id
(its adapter or, after --full, its whole model), a folder, a .gguf, a cached hub id.
Generation holds a lock: one CPU-bound forward pass at a time answers faster than several
fighting over the cores.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any

from tunelab.errors import TunelabError
from tunelab.server.errors import ApiError

_generate_lock = threading.Lock()


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: keep the text ones
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return "" if content is None else str(content)


def plain_messages(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    if not messages:
        raise ApiError(400, "messages must not be empty", code="invalid_request",
                       param="messages")
    return [{"role": str(message.get("role", "user")), "content": _text_of(message.get("content"))}
            for message in messages]


def complete(model: str, messages: list[dict[str, Any]], *, max_tokens: int,
             temperature: float, top_p: float, seed: int) -> Any:
    from tunelab.local.inference import load_chat_model

    messages = plain_messages(messages)  # a bad request fails before any model loads
    try:
        chat_model = load_chat_model(model)
    except TunelabError as error:
        raise ApiError(404, f"The model {model!r} cannot be loaded here: {error.render()}",
                       code="model_not_found", param="model") from None
    with _generate_lock:
        return chat_model.complete(messages, max_new_tokens=max_tokens,
                                   temperature=temperature, top_p=top_p, seed=seed)


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
