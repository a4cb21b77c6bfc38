"""A big .jsonl file checked on several processes gives exactly the one-process report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunelab.data import parallel
from tunelab.data.check import check_file
from tunelab.data.reader import JsonlRange, line_ranges


def lines(count: int) -> list[bytes]:
    out = []
    for index in range(count):
        example = {"messages": [{"role": "system", "content": "You are Natasha."},
                                {"role": "user", "content": f"question {index % 150}"},
                                {"role": "assistant", "content": f"answer {index % 150}"}]}
        out.append(json.dumps(example).encode())
    out[7] = b"{broken"
    out[300] = b'{"messages": []}'
    out[420] = b""  # blank lines keep the numbering
    out[555] = json.dumps({"messages": [{"role": "user", "content": "q"}]}).encode()
    return out


def test_ranges_cover_the_file_at_line_starts(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    path.write_bytes(b"\n".join(lines(600)) + b"\n")
    ranges = line_ranges(path, 4096)
    assert ranges[0][0] == 0 and ranges[-1][1] == path.stat().st_size
    assert all(end == start for (_, end), (start, _) in zip(ranges, ranges[1:], strict=False))
    content = path.read_bytes()
    assert all(content[start - 1:start] == b"\n" for start, _ in ranges[1:])
    parts = [JsonlRange(path, *byte_range) for byte_range in ranges]
    assert sum(len(list(part)) for part in parts) == 599  # one blank line
    assert sum(part.lines for part in parts) == 600


@pytest.mark.parametrize("eol", [b"\n", b"\r\n"])
def test_parallel_report_equals_the_serial_one(eol: bytes, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + eol.join(lines(600)) + eol)
    serial = check_file(path, workers=1).as_dict()
    monkeypatch.setattr(parallel, "RANGE_BYTES", 4096)  # about 40 ranges
    assert len(parallel.plan(path, 2)) > 10
    assert check_file(path, workers=2).as_dict() == serial
    assert serial["error_counts"] == {"invalid_json": 1, "empty_messages": 1,
                                      "no_assistant_message": 1}
    assert serial["warning_counts"] == {"duplicate_example": 596 - 150}
    duplicate = next(w for w in serial["warnings"] if w["line"] == 151)
    assert duplicate["message"] == "same as line 1"


def test_what_json_accepts_beyond_strict_json_keeps_its_meaning(tmp_path: Path) -> None:
    """NaN, ints past 64 bits and lone surrogates are json.loads' to judge (a faster, stricter
    parser such as orjson turns big ints into floats: measured, and left out for that)."""
    accepted_by_json = [
        '{"messages": [{"role": "user", "content": "q"}, '
        '{"role": "assistant", "content": "a", "weight": NaN}]}',  # NaN: a bad weight
        '{"messages": [{"role": "user", "content": "q"}, '
        '{"role": "assistant", "content": "a", "weight": 123456789012345678901234}]}',
        '{"messages": [{"role": "user", "content": "lone \\ud83d half"}, '
        '{"role": "assistant", "content": "a"}]}',  # counted, as tiktoken would
    ]
    path = tmp_path / "strict.jsonl"
    path.write_text("\n".join(accepted_by_json) + "\n", encoding="utf-8")
    records = list(JsonlRange(path))
    assert [record.error for record in records] == [None, None, None]
    assert [record.example for record in records] == [json.loads(line)
                                                      for line in accepted_by_json]
    report = check_file(path, workers=1).as_dict()
    assert [(e["line"], e["code"]) for e in report["errors"] if e["line"]] == [
        (1, "invalid_weight"), (2, "invalid_weight")]
    assert report["tokens"]["total"] > 0
