"""OpenAI chat examples <-> Gemini tuning records, and Gemini's tuning limits as data.

An OpenAI example is {"messages": [{"role": system|user|assistant, "content": str}, ...]}.
A Gemini (Vertex AI supervised tuning) record is

    {"systemInstruction": {"role": "system", "parts": [{"text": ...}]},   # optional
     "contents": [{"role": "user" | "model", "parts": [{"text": ...}]}, ...]}

What Gemini can hold survives a round trip unchanged: leading system messages (one part
each), then user/assistant turns with string content (one part each). What it cannot hold
is refused with a DataError (tool calls, tool/function roles, a system message after the
first turn, non-text parts, `weight` 0: Vertex trains on every model turn) or dropped on
purpose: a message's `name`, and a `weight` of 1, which is what Vertex does anyway.

Gemini's tuning limits are data here (SUPPORTED_MODELS), and `prepare_file` turns a chat
dataset into the Gemini JSONL that Vertex tunes on, checked against them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunelab.errors import DataError, UsageError

_TO_GEMINI_ROLE = {"user": "user", "assistant": "model"}
_TO_OPENAI_ROLE = {"user": "user", "model": "assistant"}


def openai_to_gemini(example: dict) -> dict:
    """One OpenAI chat example as one Gemini tuning record (raises DataError if it can't)."""
    messages = _messages_of(example)
    system_parts: list[dict[str, str]] = []
    contents: list[dict[str, Any]] = []
    for index, message in enumerate(messages, 1):
        role, text = _role_and_text(index, message)
        if role == "system":
            if contents:
                raise DataError(f"message {index}: a system message after the first turn; "
                                "Gemini holds system text only before the conversation",
                                fix="move it to the start or merge it into the first one")
            system_parts.append({"text": text})
        else:
            contents.append({"role": _TO_GEMINI_ROLE[role], "parts": [{"text": text}]})
    if not contents:
        raise DataError("the example has no user or assistant turn",
                        fix="add the conversation after the system message")
    record: dict[str, Any] = {}
    if system_parts:
        record["systemInstruction"] = {"role": "system", "parts": system_parts}
    record["contents"] = contents
    return record


def gemini_to_openai(record: dict) -> dict:
    """One Gemini tuning record as an OpenAI chat example (raises DataError if it can't).

    Each systemInstruction part becomes its own system message (so several OpenAI system
    messages come back as they went in); the parts of one turn are joined into its content.
    """
    if not isinstance(record, dict) or not isinstance(record.get("contents"), list):
        raise DataError('a Gemini record must be an object with a "contents" list',
                        fix='use {"contents": [{"role": "user", "parts": [{"text": ...}]}]}')
    messages = [{"role": "system", "content": text}
                for text in _part_texts("systemInstruction", _system_parts(record))]
    for index, content in enumerate(record["contents"], 1):
        if not isinstance(content, dict):
            raise DataError(f"contents[{index}] is not an object",
                            fix='give each turn {"role": ..., "parts": [...]}')
        role = content.get("role", "user")  # Gemini treats a missing role as the user's
        if role not in _TO_OPENAI_ROLE:
            raise DataError(f"contents[{index}]: role {role!r} is not user or model",
                            fix="use role user or model")
        texts = _part_texts(f"contents[{index}]", content.get("parts"))
        messages.append({"role": _TO_OPENAI_ROLE[role], "content": "".join(texts)})
    return {"messages": messages}


def _messages_of(example: dict) -> list:
    messages = example.get("messages") if isinstance(example, dict) else None
    if not isinstance(messages, list) or not messages:
        raise DataError('the example has no "messages" list',
                        fix='use {"messages": [{"role": "user", "content": ...}, ...]}')
    return messages


def _role_and_text(index: int, message: object) -> tuple[str, str]:
    if not isinstance(message, dict):
        raise DataError(f"message {index} is not an object", fix="give it role and content")
    role = message.get("role")
    if role not in ("system", "user", "assistant"):
        raise DataError(f"message {index}: role {role!r} cannot be tuned on Gemini",
                        fix="keep to system, user and assistant turns with text content")
    if message.get("tool_calls") or message.get("function_call"):
        raise DataError(f"message {index}: tool calls cannot be converted to Gemini",
                        fix="drop the tool-calling examples for Vertex AI")
    if message.get("weight", 1) != 1:
        raise DataError(f"message {index}: weight {message['weight']!r} has no Gemini "
                        "equivalent; Vertex trains on every model turn",
                        fix="drop the weight (or the message) for Vertex AI")
    content = message.get("content")
    if not isinstance(content, str):
        raise DataError(f"message {index}: content must be a string for Gemini",
                        fix="put the message text in content as one string")
    return role, content


def _system_parts(record: dict) -> list:
    system = record.get("systemInstruction")
    if system is None:
        return []
    if not isinstance(system, dict):
        raise DataError("systemInstruction is not an object",
                        fix='use {"parts": [{"text": ...}]}')
    return system.get("parts") or []


def _part_texts(where: str, parts: object) -> list[str]:
    if not isinstance(parts, list):
        raise DataError(f"{where}: parts must be a list", fix='use "parts": [{"text": ...}]')
    texts = []
    for part in parts:
        if not isinstance(part, dict) or not isinstance(part.get("text"), str):
            raise DataError(f"{where}: only text parts can be converted to OpenAI chat",
                            fix="drop the image, file or function parts")
        texts.append(part["text"])
    return texts


# ---- limits ------------------------------------------------------------------------------

@dataclass(frozen=True)
class GeminiLimits:
    """Vertex AI's supervised tuning limits for one base model (Google's docs, 2026-11)."""

    max_example_tokens: int  # input + output tokens of one training example
    max_validation_examples: int
    max_file_bytes: int  # of the training JSONL
    max_training_examples: int
    adapter_sizes: tuple[int, ...]


_GB = 1 << 30
_FLASH = GeminiLimits(131_072, 5_000, _GB, 1_000_000, (1, 2, 4, 8, 16))
_PRO = GeminiLimits(131_072, 5_000, _GB, 1_000_000, (1, 2, 4, 8))

# The base models Vertex AI tunes with supervised fine-tuning. Add a model here when
# Google adds it: nothing else in tunelab needs to change.
SUPPORTED_MODELS: dict[str, GeminiLimits] = {
    "gemini-2.5-flash": _FLASH,
    "gemini-2.5-flash-lite": _FLASH,
    "gemini-2.5-pro": _PRO,
    "gemini-2.0-flash-001": _FLASH,
    "gemini-2.0-flash-lite-001": _FLASH,
}
DEFAULT_MODEL = "gemini-2.5-flash"

ADAPTER_SIZES: dict[int, str] = {
    1: "ADAPTER_SIZE_ONE",
    2: "ADAPTER_SIZE_TWO",
    4: "ADAPTER_SIZE_FOUR",
    8: "ADAPTER_SIZE_EIGHT",
    16: "ADAPTER_SIZE_SIXTEEN",
}


def limits_for(model: str) -> GeminiLimits:
    """The limits of a supported base model, or UsageError naming --model and the choices."""
    try:
        return SUPPORTED_MODELS[model]
    except KeyError:
        raise UsageError(f"--model {model!r} cannot be tuned on Vertex AI",
                         fix="use one of " + ", ".join(SUPPORTED_MODELS)) from None


def adapter_size_enum(model: str, size: int) -> str:
    """The ADAPTER_SIZE_* value for --adapter-size, checked against what `model` accepts."""
    allowed = limits_for(model).adapter_sizes
    if size not in allowed:
        raise UsageError(f"--adapter-size {size} is not supported for {model}",
                         fix="use one of " + ", ".join(map(str, allowed)))
    return ADAPTER_SIZES[size]


# Every supported model shares these today; a dataset is uploaded before the model is known, so it
# checks against the strictest value of each limit.
COMMON_LIMITS = GeminiLimits(*(min(getattr(limits, name) for limits in SUPPORTED_MODELS.values())
                               for name in ("max_example_tokens", "max_validation_examples",
                                            "max_file_bytes", "max_training_examples")),
                             adapter_sizes=())


# ---- a dataset for Vertex ------------------------------------------------------------------

@dataclass(frozen=True)
class PreparedFile:
    """A dataset converted to Gemini JSONL and checked against Gemini's limits."""

    source: Path
    data: bytes
    examples: int
    first: dict[str, Any]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()



def prepare_file(path: Path, limits: GeminiLimits = COMMON_LIMITS) -> PreparedFile:
    """Read an OpenAI chat dataset, convert it to Gemini records and check Gemini's limits.

    Token counts are estimated with tiktoken's o200k_base (see tunelab.data.tokens): Gemini's
    tokenizer is not available offline, and o200k is a similar-sized multilingual vocabulary,
    so it is a close proxy; chars/4 would under-count Cyrillic text about twofold.
    """
    from tunelab.data.reader import load_examples

    path = Path(path)
    examples = load_examples(path)
    if len(examples) > limits.max_training_examples:
        raise DataError(f"{len(examples):,} examples; Vertex tunes on at most "
                        f"{limits.max_training_examples:,}", path=str(path),
                        fix="split the dataset with `tunelab data split`")
    _check_example_tokens(path, examples, limits.max_example_tokens)
    lines = []
    for number, example in enumerate(examples, 1):
        try:
            lines.append(openai_to_gemini(example))
        except DataError as error:
            raise DataError(f"example {number}: {error.message}", path=str(path),
                            fix=error.fix) from None
    data = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode()
    if len(data) > limits.max_file_bytes:
        raise DataError(f"{len(data):,} bytes in Gemini format; Vertex accepts at most "
                        f"{limits.max_file_bytes:,}", path=str(path),
                        fix="split the dataset with `tunelab data split`")
    return PreparedFile(path, data, len(lines), lines[0] if lines else {})


def _check_example_tokens(path: Path, examples: list[dict], limit: int) -> None:
    """DataError naming the first example over `limit` tokens (o200k estimate)."""
    from tunelab.data.tokens import counter_for

    # A BPE token covers at least one UTF-8 byte and a character is at most four, so an
    # example under limit/4 characters cannot be over: only the long ones get tokenized.
    suspects = [(number, example) for number, example in enumerate(examples, 1)
                if 4 * _characters(example) + 8 * len(example["messages"]) + 3 > limit]
    if not suspects:
        return
    counts = counter_for("vertex", DEFAULT_MODEL).count([example for _, example in suspects])
    for (number, _), (tokens, _, _) in zip(suspects, counts, strict=True):
        if tokens > limit:
            raise DataError(f"example {number} has about {tokens:,} tokens (o200k estimate); "
                            f"Gemini tunes on at most {limit:,} per example",
                            path=str(path), fix="shorten or split that conversation")


def _characters(example: dict) -> int:
    return sum(len(value) for message in example["messages"] for value in message.values()
               if isinstance(value, str))


def check_validation_size(count: int, model: str) -> None:
    limit = limits_for(model).max_validation_examples
    if count > limit:
        raise UsageError(f"--validation-file has {count:,} examples; Vertex accepts at most "
                         f"{limit:,}", fix=f"keep {limit:,} or fewer examples for validation")
