"""Chat examples to token ids with labels on assistant tokens only.

The model's own chat template renders each example. Which characters carry loss is found by
rendering message prefixes (SmolLM2's template has no generation tags): assistant message i
spans from the end of `render(messages[:i], add_generation_prompt=True)` to the end of
`render(messages[:i + 1])`, so its closing `<|im_end|>` is learned too and the model learns
to stop. A fast tokenizer's offsets then map those character spans onto tokens. Messages
with `"weight": 0` stay in the context but carry no loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tunelab.errors import DataError

IGNORE = -100  # the label that carries no loss


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class EncodedSet:
    """A tokenized dataset plus what happened on the way, for reports."""

    items: list[Encoded] = field(default_factory=list)
    source_count: int = 0
    truncated: int = 0
    dropped: list[int] = field(default_factory=list)  # 1-based example numbers with no loss
    full_lengths: list[int] = field(default_factory=list)  # before truncation

    @property
    def lengths(self) -> list[int]:
        return [len(item) for item in self.items]

    @property
    def tokens(self) -> int:
        return sum(self.lengths)

    @property
    def loss_tokens(self) -> int:
        return sum(sum(label != IGNORE for label in item.labels) for item in self.items)


def encode_examples(tokenizer: Any, examples: list[dict], max_length: int,
                    source: str = "data") -> EncodedSet:
    """Tokenize every example; keep those with at least one loss token after truncation."""
    result = EncodedSet(source_count=len(examples))
    for number, example in enumerate(examples, 1):
        encoded = encode_example(tokenizer, example["messages"], source=source, number=number)
        result.full_lengths.append(len(encoded))
        if len(encoded) > max_length:
            result.truncated += 1
            encoded = Encoded(encoded.input_ids[:max_length], encoded.labels[:max_length])
        # A label at position 0 is never predicted (nothing precedes it), so need one later.
        if any(label != IGNORE for label in encoded.labels[1:]):
            result.items.append(encoded)
        else:
            result.dropped.append(number)
    return result


def encode_example(tokenizer: Any, messages: list[dict], *, source: str = "data",
                   number: int = 0) -> Encoded:
    text = _render(tokenizer, messages)
    spans = assistant_spans(tokenizer, messages, text, source=source, number=number)
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(encoding["input_ids"])
    labels = [IGNORE] * len(ids)
    span_index = 0
    for position, (start, _end) in enumerate(encoding["offset_mapping"]):
        while span_index < len(spans) and start >= spans[span_index][1]:
            span_index += 1
        if span_index < len(spans) and spans[span_index][0] <= start:
            labels[position] = ids[position]
    return Encoded(ids, labels)


def assistant_spans(tokenizer: Any, messages: list[dict], text: str, *, source: str = "data",
                    number: int = 0) -> list[tuple[int, int]]:
    """Character spans of the assistant messages that carry loss, in rendered order."""
    spans = []
    for index, message in enumerate(messages):
        if message.get("role") != "assistant" or message.get("weight", 1) == 0:
            continue
        before = _render(tokenizer, messages[:index], generation_prompt=True) if index else ""
        through = _render(tokenizer, messages[: index + 1])
        if not (text.startswith(before) and text.startswith(through)):
            raise DataError(f"example {number}: the model's chat template renders message "
                            f"{index + 1} differently inside the whole conversation",
                            path=source, fix="use a model whose chat template is prefix-stable "
                            "(each message appended, never rewritten)")
        spans.append((len(before), len(through)))
    return spans


def _render(tokenizer: Any, messages: list[dict], generation_prompt: bool = False) -> str:
    plain = [{"role": m["role"], "content": m.get("content") or ""} for m in messages]
    return tokenizer.apply_chat_template(plain, tokenize=False,
                                         add_generation_prompt=generation_prompt)
