"""Preference shapes as pairs of functions to and from OpenAI's DPO row (preference.py).

    openai        {"input": {"messages"}, "preferred_output": [msg], "non_preferred_output": [msg]}
                  (also Azure, Together, Fireworks)
    trl           {"prompt": [msgs], "chosen": [assistant msg], "rejected": [assistant msg]}
                  TRL's conversational form; "tools" rides along
    trl-text      {"prompt": str, "chosen": str, "rejected": str}: TRL's standard form
    trl-implicit  {"chosen": [msgs], "rejected": [msgs]}: whole conversations sharing their
                  prompt (TRL's implicit prompt; Axolotl argilla_chat; SageMaker DPO)
    alpaca        {"instruction", "input", "chosen": str, "rejected": str, "system"?,
                  "history"?}: LLaMA-Factory's pairwise Alpaca
    sharegpt      {"conversations": [{"from", "value"}], "chosen": {"from": "gpt", "value"},
                  "rejected": {...}, "system"?}: LLaMA-Factory's pairwise ShareGPT

(huggingface/trl docs/source/dataset_formats.md; hiyouga/LLaMA-Factory data/README.md;
axolotl docs/rlhf.qmd.) A row that does not fit its shape raises DataError saying why, and
what a shape cannot hold (a system prompt in trl-text, tool calls outside openai and trl)
too: nothing is dropped. The chat formats' own converters (formats.py) do the message work
for alpaca and sharegpt, so both families read and write them the same way.
"""

from __future__ import annotations

from collections.abc import Callable

from tunelab.data.formats import (
    alpaca_to_openai,
    openai_to_alpaca,
    openai_to_sharegpt,
    sharegpt_to_openai,
)
from tunelab.data.preference import PreferencePair, row_kind
from tunelab.errors import DataError

SHAPES_HINT = "openai, trl, trl-text, trl-implicit, alpaca or sharegpt"


def identity(row: dict) -> dict:
    return row


def _pair(row: dict) -> PreferencePair:
    """The pair of an OpenAI row about to be written (convert has checked it)."""
    return PreferencePair.from_row(row)


def _row(messages: list, preferred: object, non_preferred: object,
         tools: object = None) -> dict:
    given: dict = {"messages": messages}
    if tools is not None:
        given["tools"] = tools
    return {"input": given, "preferred_output": [preferred],
            "non_preferred_output": [non_preferred]}


def trl_to_openai(row: dict) -> dict:
    prompt = row.get("prompt")
    if not isinstance(prompt, list):
        raise DataError('a TRL conversational row needs "prompt" as a list of messages',
                        fix='use {"prompt": [{"role": "user", ...}], "chosen": [...], '
                            '"rejected": [...]}')
    answers = [_one_answer(row.get(key), key) for key in ("chosen", "rejected")]
    return _row(prompt, *answers, tools=row.get("tools"))


def openai_to_trl(row: dict) -> dict:
    pair = _pair(row)
    out: dict = {"prompt": pair.messages, "chosen": [pair.preferred],
                 "rejected": [pair.non_preferred]}
    if pair.tools is not None:
        out["tools"] = pair.tools
    return out


def _one_answer(value: object, key: str) -> object:
    if not isinstance(value, list) or len(value) != 1:
        size = f"{len(value)} messages" if isinstance(value, list) else "no message list"
        raise DataError(f'"{key}" holds {size}; OpenAI\'s format takes one answer per side',
                        fix=f'put the one assistant answer in "{key}": [{{"role": '
                            '"assistant", "content": ...}]')
    return value[0]


def trl_text_to_openai(row: dict) -> dict:
    if not all(isinstance(row.get(key), str) for key in ("prompt", "chosen", "rejected")):
        raise DataError('a TRL standard row needs "prompt", "chosen" and "rejected" strings',
                        fix="give all three as text, or all three as message lists")
    return _row([{"role": "user", "content": row["prompt"]}],
                {"role": "assistant", "content": row["chosen"]},
                {"role": "assistant", "content": row["rejected"]})


def openai_to_trl_text(row: dict) -> dict:
    pair = _pair(row)
    messages = [pair.messages[0], pair.preferred, pair.non_preferred]
    if len(pair.messages) != 1 or not all(
            set(message) == {"role", "content"} and isinstance(message["content"], str)
            for message in messages):
        raise DataError("TRL's text form holds one user prompt and two answers as plain "
                        f"text; this pair has {len(pair.messages)} input message(s) or more "
                        "than text", fix="convert --to trl (conversational) instead")
    return {"prompt": pair.messages[0]["content"], "chosen": pair.preferred["content"],
            "rejected": pair.non_preferred["content"]}


def implicit_to_openai(row: dict) -> dict:
    chosen, rejected = row.get("chosen"), row.get("rejected")
    if not isinstance(chosen, list) or not isinstance(rejected, list):
        text = isinstance(chosen, str) and isinstance(rejected, str)
        raise DataError("an implicit-prompt row of plain text has no turns to tell the "
                        "prompt from the answers" if text else
                        'an implicit-prompt row needs "chosen" and "rejected" conversations',
                        fix='give a "prompt", or "chosen"/"rejected" as message lists')
    shared = 0
    while shared < min(len(chosen), len(rejected)) and chosen[shared] == rejected[shared]:
        shared += 1
    if shared == 0 or len(chosen) != shared + 1 or len(rejected) != shared + 1:
        raise DataError(f"chosen ({len(chosen)} messages) and rejected ({len(rejected)}) "
                        f"share {shared} leading message(s); they must share all but their "
                        "last, which is each side's answer",
                        fix="make both conversations the same prompt plus one answer")
    return _row(chosen[:shared], chosen[shared], rejected[shared])


def openai_to_implicit(row: dict) -> dict:
    pair = _pair(row)
    return {"chosen": pair.chosen, "rejected": pair.rejected}


def alpaca_pair_to_openai(row: dict) -> dict:
    if not all(isinstance(row.get(key), str) for key in ("chosen", "rejected")):
        raise DataError('a pairwise Alpaca row needs "chosen" and "rejected" strings',
                        fix='use {"instruction": ..., "input": "", "chosen": ..., '
                            '"rejected": ...}')
    chat = {key: value for key, value in row.items() if key not in ("chosen", "rejected")}
    messages = alpaca_to_openai({**chat, "output": row["chosen"]})["messages"]
    return _row(messages[:-1], messages[-1], {"role": "assistant", "content": row["rejected"]})


def openai_to_alpaca_pair(row: dict) -> dict:
    pair = _pair(row)
    record = openai_to_alpaca({"messages": pair.chosen})
    record["chosen"] = record.pop("output")
    record["rejected"] = _text(pair.non_preferred, "Alpaca")
    return record


def sharegpt_pair_to_openai(row: dict) -> dict:
    messages = sharegpt_to_openai(row)["messages"]
    if isinstance(row.get("system"), str):
        messages.insert(0, {"role": "system", "content": row["system"]})
    answers = []
    for key in ("chosen", "rejected"):
        turn = row.get(key)
        if not isinstance(turn, dict) or turn.get("from") != "gpt" \
                or not isinstance(turn.get("value"), str):
            raise DataError(f'"{key}" is not a {{"from": "gpt", "value": "..."}} turn',
                            fix=f'use "{key}": {{"from": "gpt", "value": "the answer"}}')
        answers.append({"role": "assistant", "content": turn["value"]})
    return _row(messages, *answers)


def openai_to_sharegpt_pair(row: dict) -> dict:
    pair = _pair(row)
    record = openai_to_sharegpt({"messages": pair.messages})
    for key, message in (("chosen", pair.preferred), ("rejected", pair.non_preferred)):
        record[key] = {"from": "gpt", "value": _text(message, "ShareGPT")}
    return record


def _text(message: dict, target: str) -> str:
    if message.get("tool_calls") or message.get("function_call") \
            or not isinstance(message.get("content"), str):
        raise DataError(f"{target} holds answers as text; this one calls a tool",
                        fix="keep tool-calling pairs in openai or trl format")
    return message["content"]


# shape -> (from OpenAI, to OpenAI)
CONVERTERS: dict[str, tuple[Callable[[dict], dict], Callable[[dict], dict]]] = {
    "openai": (identity, identity),
    "trl": (openai_to_trl, trl_to_openai),
    "trl-text": (openai_to_trl_text, trl_text_to_openai),
    "trl-implicit": (openai_to_implicit, implicit_to_openai),
    "alpaca": (openai_to_alpaca_pair, alpaca_pair_to_openai),
    "sharegpt": (openai_to_sharegpt_pair, sharegpt_pair_to_openai),
}
SHAPES = tuple(CONVERTERS)
NAME_HINTS = {"trl": "trl", "sharegpt": "sharegpt", "alpaca": "alpaca"}


def detect_shape(row: object) -> str | None:
    """The preference shape a row is in, or None when it is not a preference row."""
    if not isinstance(row, dict):
        return None
    if "chosen" not in row and "rejected" not in row:
        return "openai" if row_kind(row) == "preference" else None
    if "conversations" in row:
        return "sharegpt"
    if "instruction" in row:
        return "alpaca"
    if "prompt" in row:
        return "trl-text" if isinstance(row["prompt"], str) else "trl"
    return "trl-implicit"
