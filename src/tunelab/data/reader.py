"""Stream examples out of .jsonl, .json (an array) or .csv, one record at a time.

Nothing here holds a whole file: .jsonl is read line by line in binary (so a bad byte, a
BOM or CRLF spoils only its own line), a .json array is decoded element by element from
1 MiB chunks, and .csv rows become {system?, user, assistant} examples. Each record
carries the file's real 1-based line number (for .json, the line where the element starts).

Before any record, the file's start is sniffed: UTF-16/UTF-32 (with or without a
byte-order mark) and CR-only line endings are refused in one line naming the fix, instead
of surfacing as mojibake or as one giant unparseable line. No format caps a record's
length: a JSONL line and a CSV field are each read whole, bounded only by memory (the csv
module's own 128 KiB field cap is lifted to match).
"""

from __future__ import annotations

import codecs
import csv
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple, NoReturn

from tunelab.data.problems import Problem
from tunelab.data.rules import ERRORS, example_errors
from tunelab.errors import (
    EIGHT_BIT,
    SNIFF_BYTES,
    DataError,
    EncodingError,
    UsageError,
    command,
    wide_encoding,
)

FORMATS = (".jsonl", ".json", ".csv")
CHUNK = 1 << 20
BOM = b"\xef\xbb\xbf"
CSV_COLUMNS = ("question", "answer", "system")
LINE_SNIFF = 1 << 16  # bytes read to tell CR-only line endings from one long first line
CSV_FIELD_LIMIT = min(sys.maxsize, 2**31 - 1)  # as unbounded as a JSONL line (csv takes a C long)
JSON_ARRAY_HINT = "a .json file holds one array of examples: [{\"messages\": [...]}, ...]"
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_SCANNER = json.JSONDecoder().scan_once  # the C scanner behind json.loads


class Record(NamedTuple):
    """One example from the file: either `example` (the parsed value) or `error`."""

    line: int
    example: object = None
    error: Problem | None = None
    source: bytes | str | None = None  # the example's exact text, for duplicate detection


def iter_records(path: str | Path) -> Iterator[Record]:
    """Yield every example in `path` in file order. Raises UsageError if it cannot be read."""
    path = Path(path)
    suffix = _check_readable(path)
    if suffix == ".jsonl":
        return _jsonl_records(path)
    if suffix == ".json":
        return _json_array_records(path)
    return _csv_records(path)


def load_examples(path: str | Path) -> list[dict]:
    """Every example of a valid file, or DataError naming the first bad line and its rule."""
    examples: list[dict] = []
    for record in iter_records(path):
        problem = record.error
        if problem is None:
            broken = example_errors(record.example)
            problem = Problem(record.line, *broken[0]) if broken else None
        if problem is not None:
            raise_problem(path, problem)
        examples.append(record.example)  # type: ignore[arg-type]
    return examples


def raise_problem(path: str | Path, problem: Problem) -> NoReturn:
    """The error a reader of a file that must be valid raises on its first problem."""
    if problem.code == "invalid_utf8":
        raise EncodingError(str(path), where=f" (line {problem.line})", looks_like=EIGHT_BIT)
    raise DataError(f"{problem.code}: {problem.message}", path=str(path), line=problem.line,
                    fix=f"run `{command('tunelab', 'data', 'check', path)}` to see all")


def _check_readable(path: Path) -> str:
    if not path.exists():
        raise UsageError(f"{path}: no such file", fix="check the path")
    if path.is_dir():
        raise UsageError(f"{path} is a directory", fix="pass a .jsonl, .json or .csv file")
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(f"{path}: unknown extension {suffix or '(none)'!r}",
                         fix="use .jsonl (OpenAI chat), .json (an array) or .csv")
    try:
        with path.open("rb") as handle:
            head = handle.read(LINE_SNIFF)
    except OSError as error:
        raise UsageError(f"{path}: cannot open ({error.strerror})",
                         fix="check the file's permissions") from None
    wide = wide_encoding(head[:SNIFF_BYTES])
    if wide:
        raise EncodingError(str(path), looks_like=wide)
    if suffix != ".json" and b"\r" in head and b"\n" not in head:
        raise UsageError(f"{path}: its lines end in CR alone (old Mac line endings), so it "
                         "reads as one line", fix="re-save it with LF or CRLF line endings "
                         "(e.g. `tr '\\r' '\\n' < IN > OUT`)")
    return suffix


def parse_line(number: int, raw: bytes, bom: bool = True) -> Record | None:
    """One JSONL line to a record; None for a blank line. Line 1 may start with a BOM."""
    if raw.endswith(b"\n"):
        raw = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
    if bom and number == 1 and raw.startswith(BOM):
        raw = raw[3:]
    if not raw.strip():
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return Record(number, error=Problem(number, "invalid_utf8",
                                            f"bad byte at column {error.start + 1}; "
                                            + ERRORS["invalid_utf8"]))
    try:
        return Record(number, example=json.loads(text), source=raw)
    except json.JSONDecodeError as error:
        # A bare CR inside a line: the file's breaks are CR-only past the sniffed start.
        hint = ("; the line holds a bare CR: re-save the file with LF line endings"
                if "\r" in text else "")
        return Record(number, error=Problem(number, "invalid_json",
                                            f"{error.msg} at column {error.colno}; "
                                            + ERRORS["invalid_json"] + hint))
    except RecursionError:
        return Record(number, error=Problem(number, "invalid_json",
                                            "nested too deeply to be a chat example"))


def _jsonl_records(path: Path) -> Iterator[Record]:
    return iter(JsonlRange(path))


class JsonlRange:
    """The records of the lines that start in bytes [start, end) of a .jsonl file.

    `start` must be a line start. Line numbers count from the range's first line (1);
    `lines` says how many lines were read, so a caller stitching ranges can offset them.
    """

    def __init__(self, path: Path, start: int = 0, end: int | None = None) -> None:
        self.path, self.start, self.end = path, start, end
        self.lines = 0

    def __iter__(self) -> Iterator[Record]:
        # Fast path for the common line, `{...}\n`: the C scanner straight on the decoded
        # text, no Python frames per line. Anything else (blank, BOM, CRLF, bad bytes, bad
        # JSON, trailing text) goes through parse_line, which also words the error.
        scan, position, end = _SCANNER, self.start, self.end
        with self.path.open("rb") as handle:
            handle.seek(self.start)
            for number, raw in enumerate(handle, 1):
                if end is not None and position >= end:
                    break
                position += len(raw)
                self.lines = number
                try:
                    text = raw.decode("utf-8")
                    value, stop = scan(text, 0)
                    if stop == len(text) - 1 and text[stop] == "\n":
                        yield Record(number, value, None, raw[:-1])
                        continue
                except (UnicodeDecodeError, StopIteration, ValueError, RecursionError):
                    pass
                record = parse_line(number, raw, bom=self.start == 0)
                if record is not None:
                    yield record


def line_ranges(path: Path, size: int) -> list[tuple[int, int]]:
    """Cut a file into byte ranges of about `size`, each starting at a line start."""
    total = path.stat().st_size
    bounds = [0]
    with path.open("rb") as handle:
        while bounds[-1] + size < total:
            handle.seek(bounds[-1] + size)
            handle.readline()
            if handle.tell() >= total:
                break
            bounds.append(handle.tell())
    return list(zip(bounds, [*bounds[1:], total], strict=True))


def _json_array_records(path: Path) -> Iterator[Record]:
    """Decode a top-level JSON array one element at a time from chunks of the file."""
    stream = _JsonArrayStream(path)
    yield from stream.records()


class _JsonArrayStream:
    """A tiny incremental parser: find '[', then raw_decode each element as chunks arrive."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.buffer = ""
        self.pos = 0
        self.line = 1  # the file line at self.pos
        self.eof = False

    def records(self) -> Iterator[Record]:
        decoder = codecs.getincrementaldecoder("utf-8-sig")()
        decoder_json = json.JSONDecoder()
        with self.path.open("rb") as self.handle:
            self.decoder = decoder
            try:
                if self._next_char() != "[":
                    yield self._fail("a .json file must hold an array of examples: [{...}, ...]")
                    return
                self.pos += 1
                yield from self._elements(decoder_json)
            except UnicodeDecodeError:
                yield self._fail(ERRORS["invalid_utf8"], code="invalid_utf8")

    def _elements(self, decoder_json: json.JSONDecoder) -> Iterator[Record]:
        expect_comma = False
        while True:
            char = self._next_char()
            if char == "]":
                return
            if char == "":
                yield self._fail(_truncated("before the array's closing ']'"))
                return
            if expect_comma:
                if char != ",":
                    yield self._fail("expected ',' or ']' between examples")
                    return
                self.pos += 1
                char = self._next_char()
            if char == "":
                yield self._fail(_truncated("after a ',', before the next example or ']'"))
                return
            record = self._element(decoder_json)
            yield record
            if record.error is not None:
                return  # a broken array cannot be resynchronised reliably
            expect_comma = True

    def _element(self, decoder_json: json.JSONDecoder) -> Record:
        while True:
            try:
                value, end = decoder_json.raw_decode(self.buffer, self.pos)
            except json.JSONDecodeError as error:
                if not self.eof and self._maybe_truncated(error):
                    self._read()
                    continue
                if self.eof and self._runs_off_the_end(error):
                    return self._fail(_truncated("inside the example that starts here"))
                line = self.line + self.buffer.count("\n", self.pos, error.pos)
                return self._fail(f"{error.msg} at line {line}; not valid JSON; "
                                  + JSON_ARRAY_HINT)
            except RecursionError:
                return self._fail("nested too deeply to be a chat example")
            record = Record(self.line, example=value, source=self.buffer[self.pos:end])
            self._advance(end)
            return record

    def _maybe_truncated(self, error: json.JSONDecodeError) -> bool:
        # A chunk boundary shows up as an error at the buffer's very end, or a string that
        # runs off it; anything earlier is a real syntax error and reading on cannot fix it.
        return error.pos >= len(self.buffer) - 6 or error.msg.startswith("Unterminated string")

    def _runs_off_the_end(self, error: json.JSONDecodeError) -> bool:
        """Whether the decoder wanted more text than the file has (not a wrong character)."""
        return (error.pos >= len(self.buffer.rstrip())
                or error.msg.startswith("Unterminated string"))

    def _next_char(self) -> str:
        """Skip whitespace (reading more as needed) and return the next char, '' at EOF."""
        while True:
            self._advance(_WHITESPACE.match(self.buffer, self.pos).end())
            if self.pos < len(self.buffer):
                return self.buffer[self.pos]
            if self.eof:
                return ""
            self._read()

    def _advance(self, end: int) -> None:
        self.line += self.buffer.count("\n", self.pos, end)
        self.pos = end
        if self.pos > CHUNK:  # drop what has been consumed so memory stays bounded
            self.buffer = self.buffer[self.pos:]
            self.pos = 0

    def _read(self) -> None:
        chunk = self.handle.read(CHUNK)
        self.eof = not chunk
        self.buffer += self.decoder.decode(chunk, final=self.eof)

    def _fail(self, message: str, code: str = "invalid_json") -> Record:
        return Record(self.line, error=Problem(self.line, code, message))


def _truncated(where: str) -> str:
    return f"truncated JSON: the file ends {where}; restore or re-export the whole file"


def _csv_records(path: Path) -> Iterator[Record]:
    """Rows of question,answer[,system] become chat examples; the header names the columns."""
    bad_lines: set[int] = set()
    csv.field_size_limit(CSV_FIELD_LIMIT)
    with path.open("rb") as handle:
        # strict: a quote left open runs to the end of the file; without it csv would
        # swallow every later row into one field and report nothing.
        rows = csv.reader(_decoded_lines(handle, bad_lines), strict=True)
        parsed = _csv_rows(path, rows)
        header = [name.strip().lower() for name in next(parsed, (0, []))[1]]
        missing = [name for name in CSV_COLUMNS[:2] if name not in header]
        if missing:
            raise UsageError(f"{path}: CSV header {header} lacks {', '.join(missing)}",
                             fix="name the columns question,answer[,system]")
        columns = {name: header.index(name) for name in CSV_COLUMNS if name in header}
        for line, row in parsed:
            end = rows.line_num + 1
            if not any(cell.strip() for cell in row):
                continue
            if bad_lines & set(range(line, end)):
                yield Record(line, error=Problem(line, "invalid_utf8", ERRORS["invalid_utf8"]))
                continue
            yield Record(line, example=_row_example(row, columns), source="\x00".join(row))


def _csv_rows(path: Path, rows) -> Iterator[tuple[int, list[str]]]:
    """(first line, cells) of each row. The csv module's errors become one line naming the
    file and the line: for a quote never closed, the line its row starts on."""
    start = rows.line_num + 1
    try:
        for row in rows:
            yield start, row
            start = rows.line_num + 1
    except csv.Error as error:
        if "unexpected end of data" in str(error):
            raise UsageError(f"{path}:{start}: unterminated quote: a quoted field in the row "
                             "that starts on this line is never closed, so the rest of the "
                             "file would be read into it",
                             fix='close the quote; a quote inside a field is written twice ("")'
                             ) from None
        raise UsageError(f"{path}:{rows.line_num}: unreadable CSV ({error})",
                         fix="quote fields that hold line breaks, commas or quotes") from None


def _decoded_lines(handle, bad_lines: set[int]) -> Iterator[str]:
    for number, raw in enumerate(handle, 1):
        if number == 1 and raw.startswith(BOM):
            raw = raw[3:]
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError:
            bad_lines.add(number)
            yield raw.decode("utf-8", errors="replace")


def _row_example(row: list[str], columns: dict[str, int]) -> dict:
    def cell(name: str) -> str:
        index = columns.get(name)
        return row[index] if index is not None and index < len(row) else ""

    messages = [{"role": "system", "content": cell("system")}] if cell("system").strip() else []
    messages.append({"role": "user", "content": cell("question")})
    messages.append({"role": "assistant", "content": cell("answer")})
    return {"messages": messages}
