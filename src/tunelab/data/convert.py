"""`data convert`: read any supported format, write any other, through the OpenAI example.

Input format: .csv by extension; for .jsonl/.json the first record's keys tell (messages,
contents, conversations, instruction). Output format: --to, else from OUT's name (.csv,
or gemini/vertex, sharegpt, alpaca in the name), else OpenAI. A .json OUT is written as one
array, a .jsonl OUT as one record per line.

Preference pairs go the same way through OpenAI's DPO row: a first record with
chosen/rejected (or input/preferred_output) makes the file one of preference pairs, read
and written by the shapes in preference_formats (openai, trl, trl-text, trl-implicit,
alpaca, sharegpt). Chat files convert only to chat formats, pair files only to pair shapes.
"""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO

from tunelab.data import preference_formats as pairs
from tunelab.data.atomic_write import atomic_text, refuse_existing
from tunelab.data.formats import CONVERTERS, CSV_HEADER, FORMATS, detect_format, openai_to_csv_row
from tunelab.data.preference import pair_errors
from tunelab.data.reader import Record, iter_records
from tunelab.data.rules import example_errors
from tunelab.errors import DataError, UsageError, command

NAME_HINTS = {"gemini": "gemini", "vertex": "gemini", "sharegpt": "sharegpt", "alpaca": "alpaca"}
Examples = Iterator[tuple[int, dict]]


def output_format(out: Path, to: str | None, preference: bool = False) -> str:
    """The format to write: --to if given, else what OUT's name makes obvious. A file of
    preference pairs (`preference`) is written in a preference shape."""
    suffix = out.suffix.lower()
    if preference:
        return _pair_shape(out, to)
    if to is not None:
        to = to.lower()
        if to in pairs.SHAPES:  # trl, trl-text, trl-implicit
            raise UsageError(f"--to {to} is a preference-pair shape, and IN holds chat "
                             "examples", fix=f"use one of {', '.join(FORMATS)}, or make pairs "
                             "first with `tunelab data pairs`")
        if to not in FORMATS:
            raise UsageError(f"--to {to!r} is not a format", fix=f"use one of {', '.join(FORMATS)}")
        if (to == "csv") != (suffix == ".csv"):
            raise UsageError(f"--to {to} does not fit {out.name}",
                             fix="name a .csv file for csv, a .jsonl or .json file otherwise")
        return to
    if suffix == ".csv":
        return "csv"
    if suffix not in (".jsonl", ".json"):
        raise UsageError(f"{out.name}: unknown extension {suffix or '(none)'!r}",
                         fix="name a .jsonl, .json or .csv file, or pass --to")
    name = out.name.lower()
    return next((fmt for hint, fmt in NAME_HINTS.items() if hint in name), "openai")


def _pair_shape(out: Path, to: str | None) -> str:
    if out.suffix.lower() not in (".jsonl", ".json"):
        raise UsageError(f"{out.name}: preference pairs are written as .jsonl or .json",
                         fix="name a .jsonl or .json file")
    if to is None:
        name = out.name.lower()
        return next((shape for hint, shape in pairs.NAME_HINTS.items() if hint in name),
                    "openai")
    if to.lower() not in pairs.SHAPES:
        raise UsageError(f"--to {to} does not hold preference pairs, and IN holds them",
                         fix=f"use one of {pairs.SHAPES_HINT}")
    return to.lower()


def convert(source: str | Path, out: str | Path, *, to: str | None = None,
            force: bool = False) -> dict:
    """Convert `source` into `out`; returns {examples, from, to, out} (and format:
    preference for pairs). Errors name the line; OUT is written only when every row
    converted."""
    source, out = Path(source), Path(out)
    records, shape = _first_shape(source)
    target = output_format(out, to, preference=shape is not None)
    refuse_existing(out, force)
    if shape is not None:
        fmt, examples = shape, _checked_pairs(source, shape, records)
        writer = pairs.CONVERTERS[target][0]
    else:
        fmt, examples = read_openai(source)
        writer = CONVERTERS[target][0] if target != "csv" else openai_to_csv_row
    with atomic_text(out, force) as handle:
        count = _write(handle, source, out, target, examples, writer)
    result = {"examples": count, "from": fmt, "to": target, "out": str(out)}
    return {**result, "format": "preference"} if shape is not None else result


def _first_shape(source: Path) -> tuple[Iterable[Record], str | None]:
    """The file's records, and its preference shape (None: chat examples), from its first."""
    records: Iterable[Record] = iter_records(source)
    if source.suffix.lower() == ".csv":
        return records, None
    first = next(iter(records), None)
    if first is None:
        return [], None
    shape = pairs.detect_shape(first.example) if first.error is None else None
    return itertools.chain([first], records), shape


def _checked_pairs(source: Path, shape: str, records: Iterable[Record]) -> Examples:
    """(line, OpenAI DPO row) of each record in `shape`; the first that does not map, or
    maps to a pair OpenAI rejects, raises DataError naming its line and why."""
    to_openai = pairs.CONVERTERS[shape][1]
    for record in records:
        if record.error is not None:
            raise DataError(f"{record.error.code}: {record.error.message}", path=str(source),
                            line=record.line)
        if not isinstance(record.example, dict):
            raise DataError(f"not a {shape} preference row (a JSON value that is no object)",
                            path=str(source), line=record.line,
                            fix=f"every row of the file must be in the first row's shape, {shape}")
        row = _at_line(source, record.line, to_openai, record.example)
        broken = pair_errors(row)
        if broken:
            raise DataError(f"{broken[0][0]}: {broken[0][1]}", path=str(source),
                            line=record.line, fix=f"fix the row (read as {shape})")
        yield record.line, row


def read_openai(source: Path) -> tuple[str, Examples]:
    """The input's format, and (line, OpenAI example) for each of its records.

    Every example must pass OpenAI's rules; the first that does not raises DataError."""
    records: Iterable[Record] = iter_records(source)
    if source.suffix.lower() == ".csv":
        return "csv", _checked(source, "csv", records)
    first = next(iter(records), None)
    fmt = "openai"
    if first is not None:
        fmt = detect_format(first.example) or "openai"
        records = itertools.chain([first], records)
    return fmt, _checked(source, fmt, records)


def _checked(source: Path, fmt: str, records: Iterable[Record]) -> Examples:
    to_openai = CONVERTERS.get(fmt, (None, None))[1]
    for record in records:
        if record.error is not None:
            raise DataError(f"{record.error.code}: {record.error.message}", path=str(source),
                            line=record.line)
        example = record.example
        if pairs.detect_shape(example) is not None:  # chat converters would drop its answers
            raise DataError("a preference pair where chat examples are read", path=str(source),
                            line=record.line, fix="keep chat examples and preference pairs in "
                            "separate files (`tunelab data convert` reads a file of pairs)")
        if to_openai is not None:
            example = _at_line(source, record.line, to_openai, example)
        broken = example_errors(example)
        if broken:
            raise DataError(f"{broken[0][0]}: {broken[0][1]}", path=str(source),
                            line=record.line,
                            fix=f"run `{command('tunelab', 'data', 'check', source)}`")
        yield record.line, example


def _at_line(source: Path, line: int, function: Callable, value: object):
    """Call a format converter; its DataError gains the file and line."""
    try:
        return function(value)
    except DataError as error:
        raise DataError(error.message, path=str(source), line=line, fix=error.fix) from None


def _write(handle: IO[str], source: Path, out: Path, target: str, examples: Examples,
           from_openai: Callable[[dict], object]) -> int:
    count = 0
    if target == "csv":
        writer = csv.writer(handle)  # CRLF rows, so a lone \r in a field gets quoted too
        writer.writerow(CSV_HEADER)
        for line, example in examples:
            writer.writerow(_at_line(source, line, from_openai, example))
            count += 1
        return count
    as_array = out.suffix.lower() == ".json"
    handle.write("[\n" if as_array else "")
    for line, example in examples:
        text = json.dumps(_at_line(source, line, from_openai, example), ensure_ascii=False)
        handle.write((",\n" if as_array and count else "") + text + ("" if as_array else "\n"))
        count += 1
    handle.write("\n]\n" if as_array else "")
    return count
