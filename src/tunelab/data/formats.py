"""Chat formats as pairs of functions to and from the OpenAI example {"messages": [...]}.

    openai    {"messages": [{"role", "content", ...}]}                         .jsonl/.json
    gemini    {"systemInstruction"?, "contents": [{"role": user|model, "parts"}]}  (gemini.py)
    sharegpt  {"conversations": [{"from": system|human|gpt, "value"}]}
    alpaca    {"instruction", "input", "output", "system"?, "history"?: [[user, reply], ...]}
    csv       question,answer,system columns (one user turn and one reply)

OpenAI -> X -> OpenAI gives back the same messages wherever X can hold them. What X cannot
hold raises DataError (tool calls, tool roles, multi-turn in CSV, weights outside OpenAI);
a message's `name` is dropped outside OpenAI, as in gemini.py.
"""

from __future__ import annotations

from collections.abc import Callable

from tunelab.data.gemini import gemini_to_openai, openai_to_gemini
from tunelab.errors import DataError

SHAREGPT_ROLES = {"system": "system", "user": "human", "assistant": "gpt"}
OPENAI_ROLES = {value: key for key, value in SHAREGPT_ROLES.items()}
CSV_HEADER = ("question", "answer", "system")


def identity(example: dict) -> dict:
    return example


def openai_to_sharegpt(example: dict) -> dict:
    turns = [{"from": SHAREGPT_ROLES[role], "value": text} for role, text in _turns(example)]
    return {"conversations": turns}


def sharegpt_to_openai(record: dict) -> dict:
    turns = record.get("conversations") if isinstance(record, dict) else None
    if not isinstance(turns, list):
        raise DataError('a ShareGPT record needs a "conversations" list',
                        fix='use {"conversations": [{"from": "human", "value": ...}, ...]}')
    messages = []
    for index, turn in enumerate(turns, 1):
        speaker = turn.get("from") if isinstance(turn, dict) else None
        if speaker not in OPENAI_ROLES or not isinstance(turn.get("value"), str):
            raise DataError(f"conversations[{index}] is not a system/human/gpt turn with text",
                            fix='use {"from": "human" | "gpt" | "system", "value": "..."}')
        messages.append({"role": OPENAI_ROLES[speaker], "content": turn["value"]})
    return {"messages": messages}


def openai_to_alpaca(example: dict) -> dict:
    system, pairs = _system_and_pairs(example, "Alpaca")
    record = {"instruction": pairs[-1][0], "input": "", "output": pairs[-1][1]}
    if system is not None:
        record["system"] = system
    if len(pairs) > 1:
        record["history"] = [list(pair) for pair in pairs[:-1]]
    return record


def alpaca_to_openai(record: dict) -> dict:
    if not isinstance(record, dict) or not all(
            isinstance(record.get(key), str) for key in ("instruction", "output")):
        raise DataError('an Alpaca record needs "instruction" and "output" strings',
                        fix='use {"instruction": ..., "input": "", "output": ...}')
    messages = []
    if isinstance(record.get("system"), str):
        messages.append({"role": "system", "content": record["system"]})
    for pair in record.get("history") or []:
        if not _is_pair(pair):
            raise DataError('"history" must be a list of [user, reply] pairs',
                            fix='use "history": [["question", "answer"], ...]')
        messages += [{"role": "user", "content": pair[0]},
                     {"role": "assistant", "content": pair[1]}]
    prompt = record["instruction"]
    if record.get("input"):  # Alpaca's optional context goes after the instruction
        prompt = f"{prompt}\n\n{record['input']}"
    messages += [{"role": "user", "content": prompt},
                 {"role": "assistant", "content": record["output"]}]
    return {"messages": messages}


def _is_pair(pair: object) -> bool:
    return isinstance(pair, list) and len(pair) == 2 and all(isinstance(t, str) for t in pair)


def openai_to_csv_row(example: dict) -> list[str]:
    system, pairs = _system_and_pairs(example, "CSV")
    if len(pairs) > 1:
        raise DataError("a multi-turn example does not fit CSV's one question and one answer",
                        fix="convert to openai, sharegpt or alpaca instead")
    return [pairs[0][0], pairs[0][1], system or ""]


def _turns(example: dict) -> list[tuple[str, str]]:
    """(role, text) of each message, refusing what only OpenAI's format can hold."""
    messages = example.get("messages") if isinstance(example, dict) else None
    if not isinstance(messages, list) or not messages:
        raise DataError('the example has no "messages" list', fix="run `tunelab data check`")
    turns = []
    for index, message in enumerate(messages, 1):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in SHAREGPT_ROLES or not isinstance(message.get("content"), str) \
                or message.get("tool_calls") or message.get("function_call"):
            raise DataError(f"message {index}: only system, user and assistant text converts",
                            fix="keep tool-calling examples in OpenAI format")
        if message.get("weight", 1) != 1:
            raise DataError(f"message {index}: weight 0 exists only in OpenAI's format",
                            fix="drop the weight or keep the OpenAI format")
        turns.append((role, message["content"]))
    return turns


def _system_and_pairs(example: dict, target: str) -> tuple[str | None, list[tuple[str, str]]]:
    """An optional leading system prompt, then strict (user, assistant) pairs."""
    turns = _turns(example)
    system = turns.pop(0)[1] if turns and turns[0][0] == "system" else None
    roles = [role for role, _ in turns]
    if not turns or roles != ["user", "assistant"] * (len(turns) // 2):
        raise DataError(f"{target} holds a system prompt then user/assistant pairs; this "
                        "example has " + " -> ".join(roles or ["nothing after the system"]),
                        fix="convert to openai or sharegpt instead")
    return system, [(turns[i][1], turns[i + 1][1]) for i in range(0, len(turns), 2)]


# format -> (from OpenAI, to OpenAI). CSV rows are written and read by convert.py/reader.py.
CONVERTERS: dict[str, tuple[Callable[[dict], dict], Callable[[dict], dict]]] = {
    "openai": (identity, identity),
    "gemini": (openai_to_gemini, gemini_to_openai),
    "sharegpt": (openai_to_sharegpt, sharegpt_to_openai),
    "alpaca": (openai_to_alpaca, alpaca_to_openai),
}
FORMATS = (*CONVERTERS, "csv")
# The key that gives each JSON format away, for reading files of unknown format.
SIGNATURES = {"messages": "openai", "contents": "gemini", "conversations": "sharegpt",
              "instruction": "alpaca"}


def detect_format(record: object) -> str | None:
    if isinstance(record, dict):
        for key, name in SIGNATURES.items():
            if key in record:
                return name
    return None
