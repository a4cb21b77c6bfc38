"""Prompts for `tunelab test`: the five built-in ones, or a file of the user's.

A .txt file holds one user prompt per line (# starts a comment line). A dialogue file
(.jsonl/.json/.csv) gives each example's conversation up to its last assistant turn, so its
system prompt comes along; a file of preference pairs gives each pair's input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunelab.config import read_utf8
from tunelab.errors import UsageError

# The seed's auto-test asked five prompts after training; the first two are its own.
DEFAULT_PROMPTS = (
    "Я чувствую себя потерянным в жизни",
    "Как начать свой бизнес?",
    "Мы с партнёром постоянно ссоримся из-за мелочей. Что делать?",
    "I keep procrastinating on the things that matter most. Why?",
    "Что значит жить осознанно?",
)

Messages = list[dict[str, Any]]


def load_prompts(path: Path | None, system: str | None = None,
                 fallback_system: str | None = None) -> list[Messages]:
    """Conversations to send, each ending where the model should answer. `system` replaces
    any system prompt; `fallback_system` goes only where there is none."""
    if path is None:
        conversations = [[{"role": "user", "content": text}] for text in DEFAULT_PROMPTS]
    elif path.suffix.lower() == ".txt":
        lines = [line.strip() for line in read_utf8(path, f"--prompts {path}").splitlines()]
        conversations = [[{"role": "user", "content": line}] for line in lines
                         if line and not line.startswith("#")]  # as the trainer's samples
    else:
        from tunelab.data.preference import file_format, read_pairs
        from tunelab.data.reader import load_examples
        from tunelab.evaluate.runner import eval_items

        if file_format(path) == "preference":  # each pair's input: what both answers answer
            conversations = [pair.messages for pair in read_pairs(path)]
        else:
            conversations = [item.prompt for item in eval_items(load_examples(path),
                                                                str(path))]
    if not conversations:
        raise UsageError(f"--prompts {path}: no prompts in it", fix="put one prompt per line")
    if system:
        return [with_system(messages, system) for messages in conversations]
    if fallback_system:
        return [messages if messages[0].get("role") == "system"
                else with_system(messages, fallback_system) for messages in conversations]
    return conversations


def with_system(messages: Messages, system: str) -> Messages:
    """`messages` with `system` as their system prompt (replacing one they had)."""
    rest = [message for message in messages if message.get("role") != "system"]
    return [{"role": "system", "content": system}, *rest]
