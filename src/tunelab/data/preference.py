"""Preference pairs in OpenAI's DPO format: the row model, its rules, and a reader.

    {"input": {"messages": [...], "tools": [...]?, "parallel_tool_calls": bool?},
     "preferred_output": [{"role": "assistant", "content": ...}],
     "non_preferred_output": [{"role": "assistant", "content": ...}]}

(developers.openai.com/api/docs/guides/direct-preference-optimization; Together, Fireworks
and Azure take the same rows.) `pair_errors` is to a preference row what
rules.example_errors is to a chat example: every (code, message) it breaks, each message
naming the fix; the messages inside it are checked by the chat rules. `data check` runs it
through its usual scan (data/check.py); `read_pairs` gives a trainer typed pairs.

A file holds one kind of row: its first valid row decides (`file_format`), and a row of the
other kind is an error where it stands.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from tunelab.data.problems import Problem
from tunelab.data.reader import Record, iter_records, raise_problem
from tunelab.data.rules import json_kind, message_errors

Format = Literal["chat", "preference"]
PREFERENCE_KEYS = frozenset({"input", "preferred_output", "non_preferred_output"})
OUTPUT_KEYS = ("preferred_output", "non_preferred_output")
INPUT_KEYS = frozenset({"messages", "tools", "parallel_tool_calls"})
SNIFF_RECORDS = 1000  # rows read to find the first valid one before calling a file chat

# code -> what is wrong and how to fix it (chat message codes from rules.ERRORS also apply).
PAIR_ERRORS: dict[str, str] = {
    "missing_input": 'a preference row needs an "input" object holding a "messages" list',
    "empty_input": 'input.messages is empty; put the conversation up to the answer there',
    "invalid_tools": 'input.tools must be a list and input.parallel_tool_calls true or false',
    "last_input_not_user": "the last input message must be the user's: both outputs answer it",
    "missing_output": "a preference row needs preferred_output and non_preferred_output lists",
    "empty_output": "the output list is empty; put the one assistant answer in it",
    "output_not_single": "an output list holds exactly one assistant message",
    "output_not_assistant": 'an output message must have role "assistant"',
    "identical_outputs": "the preferred and non-preferred answers are the same; nothing to "
                         "learn from the pair: change one or drop the row",
    "mixed_formats": "chat examples and preference pairs cannot share a file; split them "
                     "(`tunelab data convert` reads other preference shapes)",
}

PAIR_WARNINGS: dict[str, str] = {
    "no_dpo_on_target": "trains no DPO (the pricing table names the models that do)",
}


@dataclass(frozen=True)
class PreferencePair:
    """One checked row: the conversation up to the answer, and the two answers to it."""

    messages: list[dict]
    preferred: dict
    non_preferred: dict
    tools: list[dict] | None = None
    parallel_tool_calls: bool | None = None
    line: int = field(default=0, compare=False)  # where the row is in its file

    @classmethod
    def from_row(cls, row: dict, line: int = 0) -> PreferencePair:
        """A pair from a row `pair_errors` accepts."""
        given = row["input"]
        return cls(given["messages"], row["preferred_output"][0],
                   row["non_preferred_output"][0], given.get("tools"),
                   given.get("parallel_tool_calls"), line)

    def as_row(self) -> dict:
        """The OpenAI DPO row."""
        given: dict = {"messages": self.messages}
        if self.tools is not None:
            given["tools"] = self.tools
        if self.parallel_tool_calls is not None:
            given["parallel_tool_calls"] = self.parallel_tool_calls
        return {"input": given, "preferred_output": [self.preferred],
                "non_preferred_output": [self.non_preferred]}

    @property
    def chosen(self) -> list[dict]:
        """The whole conversation ending in the preferred answer."""
        return [*self.messages, self.preferred]

    @property
    def rejected(self) -> list[dict]:
        return [*self.messages, self.non_preferred]


def row_kind(value: object) -> Format | None:
    """What a parsed row is meant to be, from its keys; None when it says neither."""
    if not isinstance(value, dict):
        return None
    # "input" alone is not enough: Alpaca rows carry an "input" string.
    if "preferred_output" in value or "non_preferred_output" in value \
            or isinstance(value.get("input"), dict):
        return "preference"
    return "chat" if "messages" in value else None


def detect_format(records: Iterable[Record]) -> Format:
    """The format of the first valid row among the first SNIFF_RECORDS (default chat)."""
    for count, record in enumerate(records, 1):
        kind = row_kind(record.example) if record.error is None else None
        if kind is not None or count >= SNIFF_RECORDS:
            return kind or "chat"
    return "chat"


def file_format(path: str | Path) -> Format:
    """A file's format (UsageError if it cannot be read); .csv files hold chat examples."""
    path = Path(path)
    records = iter_records(path)
    return "chat" if path.suffix.lower() == ".csv" else detect_format(records)


def pair_errors(row: object) -> list[tuple[str, str]]:
    """Every (code, message) this preference row breaks; an empty list means it is valid."""
    if not isinstance(row, dict):
        return [("not_an_object", f"got a JSON {json_kind(row)}; a preference row is an "
                 'object like {"input": {...}, "preferred_output": [...], ...}')]
    found = _unknown(row, PREFERENCE_KEYS, "the row",
                     "input, preferred_output, non_preferred_output")
    found += _input_errors(row.get("input"))
    outputs = [_output_errors(row, key) for key in OUTPUT_KEYS]
    for errors in outputs:
        found += errors
    if not any(outputs) and _same(row["preferred_output"][0], row["non_preferred_output"][0]):
        found.append(("identical_outputs", PAIR_ERRORS["identical_outputs"]))
    return found


def _input_errors(given: object) -> list[tuple[str, str]]:
    if not isinstance(given, dict) or not isinstance(given.get("messages"), list):
        what = ("no input" if given is None else 'no "messages" list in input'
                if isinstance(given, dict) else f"input is a JSON {json_kind(given)}")
        return [("missing_input", f"{what}; {PAIR_ERRORS['missing_input']}")]
    found = _unknown(given, INPUT_KEYS, "input", "messages, tools, parallel_tool_calls")
    tools, parallel = given.get("tools"), given.get("parallel_tool_calls")
    if (tools is not None and not isinstance(tools, list)) or \
            (parallel is not None and not isinstance(parallel, bool)):
        found.append(("invalid_tools", PAIR_ERRORS["invalid_tools"]))
    messages = given["messages"]
    if not messages:
        return [*found, ("empty_input", PAIR_ERRORS["empty_input"])]
    for index, message in enumerate(messages, 1):
        where = f"input message {index}"
        if not isinstance(message, dict):
            found.append(("message_not_object", f"{where}: each message must be an object "
                          "with role and content"))
        else:
            found += message_errors(message, where)
    last = messages[-1]
    if isinstance(last, dict) and last.get("role") != "user":
        found.append(("last_input_not_user", f"input ends on a {last.get('role')!r} "
                      f"message; {PAIR_ERRORS['last_input_not_user']}"))
    return found


def _output_errors(row: dict, key: str) -> list[tuple[str, str]]:
    output = row.get(key)
    if not isinstance(output, list):
        what = "missing" if output is None else f"a JSON {json_kind(output)}"
        return [("missing_output", f"{key} is {what}; {PAIR_ERRORS['missing_output']}")]
    if not output:
        return [("empty_output", f"{key}: {PAIR_ERRORS['empty_output']}")]
    if len(output) > 1:
        return [("output_not_single", f"{key} holds {len(output)} messages; "
                 + PAIR_ERRORS["output_not_single"])]
    message = output[0]
    if not isinstance(message, dict):
        return [("message_not_object", f"{key}: the answer must be an object with role "
                 "and content")]
    found = message_errors(message, key)
    if "role" in message and message["role"] != "assistant":
        found.append(("output_not_assistant", f"{key}: role {message['role']!r}; "
                      + PAIR_ERRORS["output_not_assistant"]))
    return found


def _unknown(value: dict, allowed: frozenset[str], where: str,
             names: str) -> list[tuple[str, str]]:
    unknown = sorted(str(key) for key in value if key not in allowed)
    if not unknown:
        return []
    return [("unrecognized_key", f"{where}: {', '.join(map(repr, unknown))} not allowed; "
             f"use {names}")]


def _same(preferred: dict, non_preferred: dict) -> bool:
    """Same answer: same text (ignoring surrounding space) and same tool calls."""
    def answer(message: dict) -> tuple:
        content = message.get("content")
        text = content.strip() if isinstance(content, str) else content
        return text, message.get("tool_calls"), message.get("function_call")

    return answer(preferred) == answer(non_preferred)


def read_pairs(path: str | Path) -> list[PreferencePair]:
    """Every pair of a valid preference file, in file order; DataError naming the first bad
    line and its rule otherwise (a chat file is refused on its first row)."""
    pairs: list[PreferencePair] = []
    for record in iter_records(path):
        problem = record.error
        if problem is None:
            if row_kind(record.example) == "chat":
                broken = [("mixed_formats", "a chat example where preference pairs are read; "
                           "make pairs first (`tunelab data pairs`)")]
            else:
                broken = pair_errors(record.example)
            problem = Problem(record.line, *broken[0]) if broken else None
        if problem is not None:
            raise_problem(path, problem)
        pairs.append(PreferencePair.from_row(record.example, record.line))  # type: ignore[arg-type]
    return pairs
