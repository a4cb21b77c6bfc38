"""Preference pairs from a persona's own data (`tunelab data pairs FILE --rejected-from MODEL`).

Each chat example becomes one OpenAI preference row: the conversation up to its last user
turn is the input, the dataset's last assistant answer is preferred, and the answer MODEL
gives to the same input is not ("answer like Natasha, not like a generic assistant").

MODEL is anything `compare` takes (evaluate/specs.py); `base` alone means the model
`tunelab train` tunes when no --model is given. Answers come from compare's Asker, through
the answer cache, so a rerun sends nothing for an answer already paid for.

OUT is appended one row at a time (evaluate/jsonl_log.py): a kill leaves a valid prefix. A
second run with the same OUT checks that its rows are FILE's pairs in order and continues
after the last one. A pair whose generated answer equals the dataset's is skipped and
counted: `data check` refuses identical pairs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunelab.errors import DataError, command
from tunelab.evaluate import jsonl_log
from tunelab.evaluate.cache import AnswerCache, NoCache
from tunelab.evaluate.runner import Asker, EvalItem, Progress, Settings, eval_items
from tunelab.evaluate.specs import BASE, LOCAL, ModelSpec, resolve_spec
from tunelab.local.model_source import DEFAULT_MODEL

# Inputs asked at a time: a local model answers them in one batch (Asker.ask_many), and OUT
# gets their rows before the next are asked, so a kill loses at most one chunk's answers
# (a cloud model's are in the answer cache already: never paid for twice).
CHUNK = 8


@dataclass
class PairsSummary:
    source: str
    out: str
    model: ModelSpec
    settings: Settings
    examples: int  # in FILE
    kept: int = 0  # rows OUT already held from an earlier run
    written: int = 0  # rows this run added
    identical: int = 0  # skipped: MODEL gave the dataset's own answer
    cache_hits: int = 0
    cache_misses: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "out": self.out, "model": self.model.to_dict(),
                "settings": self.settings.to_dict(), "examples": self.examples,
                "rows": self.kept + self.written, "kept": self.kept, "written": self.written,
                "identical_skipped": self.identical,
                "cache": {"hits": self.cache_hits, "misses": self.cache_misses}}


def rejected_spec(token: str, *, provider: str | None = None,
                  base_url: str | None = None) -> ModelSpec:
    """The model whose answers are rejected; `base` with no job beside it is the default
    base model (what `tunelab train` tunes without --model)."""
    if token == BASE:
        return ModelSpec(BASE, LOCAL, DEFAULT_MODEL)
    return resolve_spec(token, provider=provider, base_url=base_url)


def pair_row(item: EvalItem, rejected: str) -> dict[str, Any]:
    return {"input": {"messages": item.prompt},
            "preferred_output": [{"role": "assistant", "content": item.reference}],
            "non_preferred_output": [{"role": "assistant", "content": rejected}]}


def make_pairs(source: Path, model: str, out: Path, *, settings: Settings | None = None,
               provider: str | None = None, base_url: str | None = None,
               use_cache: bool = True, progress: Progress | None = None) -> PairsSummary:
    """Write FILE's pairs against MODEL's answers to OUT, resuming after the rows there."""
    from tunelab.data.reader import load_examples

    spec = rejected_spec(model, provider=provider, base_url=base_url)
    items = _items(source, load_examples(source))
    summary = PairsSummary(str(source), str(out), spec, settings or Settings(), len(items))
    start, summary.kept = _resume_point(out, source, items)
    cache = AnswerCache() if use_cache else NoCache()
    try:
        asker = Asker(cache)
        done = start

        def advance(count: int) -> None:  # answers as they come: per batch, or per request
            nonlocal done
            done += count
            if progress and count:
                progress(spec.label, done, len(items))

        for first in range(start, len(items), CHUNK):
            chunk = items[first:first + CHUNK]
            answers = asker.ask_many(spec, [item.prompt for item in chunk], summary.settings,
                                     advance)
            for item, answer in zip(chunk, answers, strict=True):
                if answer.text.strip() == item.reference.strip():
                    summary.identical += 1
                else:
                    jsonl_log.append(out, pair_row(item, answer.text))
                    summary.written += 1
    finally:
        cache.close()
    summary.cache_hits, summary.cache_misses = cache.hits, cache.misses
    return summary


def _items(source: Path, examples: list[dict[str, Any]]) -> list[EvalItem]:
    """Each example split at its last assistant turn; the input must end with the user's."""
    items = eval_items(examples, str(source))
    for number, item in enumerate(items, 1):
        if item.prompt[-1].get("role") != "user":
            raise DataError(f"example {number}: the message before its last assistant answer "
                            f"is the {item.prompt[-1].get('role')}'s, not the user's",
                            path=str(source),
                            fix="a preference input must end with a user turn")
    return items


def _resume_point(out: Path, source: Path, items: list[EvalItem]) -> tuple[int, int]:
    """(the first item still to do, the rows OUT holds). OUT's rows must be pairs of FILE's
    items in order; items between them were skipped as identical."""
    lines = jsonl_log.read_lines(out)
    position = 0
    for number, line in enumerate(lines, 1):
        row = _row(out, number, line)
        while position < len(items) and not _same_pair(row, items[position]):
            position += 1
        if position == len(items):
            raise DataError(f"row {number} is not a pair from {source} (in order)",
                            path=str(out), line=number,
                            fix=f"write to another -o file, or delete {out} to start over: "
                                f"`{command('tunelab', 'data', 'pairs', str(source))} "
                                "--rejected-from MODEL -o NEW.jsonl`")
        position += 1
    return position, len(lines)


def _row(out: Path, number: int, line: str) -> dict[str, Any]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        row = None
    if not isinstance(row, dict):
        raise DataError(f"row {number} is not a JSON object", path=str(out), line=number,
                        fix=f"write to another -o file, or delete {out} to start over")
    return row


def _same_pair(row: dict[str, Any], item: EvalItem) -> bool:
    expected = pair_row(item, "")
    return (row.get("input") == expected["input"]
            and row.get("preferred_output") == expected["preferred_output"])
