"""Check a .jsonl training file with bounded memory: one line at a time, each line capped.

`load_examples` (reader.py) keeps every example, and its reader takes a line whole however
long it is; that suits the CLI, which trains on what it read. The server only needs to know
that a file it will train on later is sound, for any size, so it reads here: each line is
parsed, checked against the chat rules and dropped, and a line over `max_line_bytes` is an
error rather than a buffer the size of the file.
"""

from __future__ import annotations

from pathlib import Path

from tunelab.data.preference import pair_errors, row_kind
from tunelab.data.problems import Problem
from tunelab.data.reader import parse_line
from tunelab.data.rules import example_errors
from tunelab.errors import DataError, command

# A chat example far longer than any context a model here trains on (131,072 tokens is
# TrainConfig's cap on max_length, about 0.5 MB of text) still fits with room to spare.
MAX_LINE_BYTES = 8 * 1024 * 1024


def count_examples(path: str | Path, *, max_line_bytes: int = MAX_LINE_BYTES,
                   method: str = "supervised") -> int:
    """How many examples `path` (.jsonl) holds, or DataError naming the first bad line; a
    file without one example is an error too. Each line is a chat example, or for `method`
    dpo a preference pair (data/preference.py). Memory: one line, at most `max_line_bytes`."""
    expected = "preference" if method == "dpo" else "chat"
    rules = pair_errors if method == "dpo" else example_errors
    path, count = Path(path), 0
    with path.open("rb") as handle:
        for number, raw in enumerate(iter(lambda: handle.readline(max_line_bytes + 1), b""), 1):
            if len(raw) > max_line_bytes:
                raise _error(path, Problem(number, "line_too_long",
                                           f"the line is over {max_line_bytes} bytes"),
                             fix="split the example or shorten it")
            record = parse_line(number, raw)
            if record is None:
                continue
            problem = record.error
            if problem is None:
                kind = row_kind(record.example)
                broken = [_other_method(kind)] if kind not in (None, expected) \
                    else rules(record.example)
                problem = Problem(number, *broken[0]) if broken else None
            if problem is not None:
                raise _error(path, problem)
            count += 1
    if not count:
        raise DataError("the file holds no examples", path=str(path),
                        fix="upload a .jsonl file with one chat example per line")
    return count


def _other_method(kind: str | None) -> tuple[str, str]:
    """A row of the other method's kind: name the method that trains it."""
    if kind == "preference":
        return ("mixed_formats", "a preference pair, which trains only with method dpo")
    return ("mixed_formats", "a chat example, and method dpo trains on preference pairs")


def _error(path: Path, problem: Problem, fix: str | None = None) -> DataError:
    return DataError(f"{problem.code}: {problem.message}", path=str(path), line=problem.line,
                     fix=fix or f"run `{command('tunelab', 'data', 'check', path)}` to see all")
