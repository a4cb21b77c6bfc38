"""`tunelab data check` on a corpus of malformed inputs: each case's exit code, code and line.

Every case is ten valid examples with one bad line put at a known line, so the only
finding is the one under test (except the too-few-examples cases, which are about size).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunelab.cli import main

GOOD = {"messages": [{"role": "system", "content": "You are Natasha."},
                     {"role": "user", "content": "What is love?"},
                     {"role": "assistant", "content": "A river that remembers the sea."}]}


def good_line(index: int) -> bytes:
    example = json.loads(json.dumps(GOOD))
    example["messages"][1]["content"] += f" ({index})"  # distinct, so no duplicate warnings
    return json.dumps(example, ensure_ascii=False).encode()


def dataset(bad: bytes | None = None, *, at: int = 3, valid: int = 10, eol: bytes = b"\n",
            prefix: bytes = b"") -> bytes:
    lines = [good_line(index) for index in range(valid)]
    if bad is not None:
        lines.insert(at - 1, bad)
    return prefix + eol.join(lines) + eol


def messages(*items: object) -> bytes:
    return json.dumps({"messages": list(items)}).encode()


USER = {"role": "user", "content": "hi"}
REPLY = {"role": "assistant", "content": "hello"}

# name -> (file content, expected exit code, expected error code, expected line)
CASES: dict[str, tuple[bytes, int, str, int | None]] = {
    "invalid_json": (dataset(b'{"messages": [{"role": "user"'), 1, "invalid_json", 3),
    "trailing_garbage": (dataset(messages(USER, REPLY) + b" x"), 1, "invalid_json", 3),
    "invalid_utf8": (dataset(b'{"messages": [{"role": "user", "content": "\xff\xfe"}]}'),
                     1, "invalid_utf8", 3),
    "array_line": (dataset(b"[1, 2, 3]"), 1, "not_an_object", 3),
    "string_line": (dataset(b'"just text"'), 1, "not_an_object", 3),
    "no_messages_key": (dataset(b'{"prompt": "hi", "completion": "yo"}'), 1,
                        "missing_messages", 3),
    "messages_not_list": (dataset(b'{"messages": "hi"}'), 1, "missing_messages", 3),
    "empty_messages": (dataset(b'{"messages": []}'), 1, "empty_messages", 3),
    "message_not_object": (dataset(messages("hi", REPLY)), 1, "message_not_object", 3),
    "missing_role": (dataset(messages({"content": "hi"}, REPLY)), 1, "missing_role", 3),
    "missing_content": (dataset(messages({"role": "user"}, REPLY)), 1, "missing_content", 3),
    "unrecognized_key": (dataset(messages({**USER, "tone": "warm"}, REPLY)), 1,
                         "unrecognized_key", 3),
    "unrecognized_role": (dataset(messages({"role": "narrator", "content": "x"}, REPLY)), 1,
                          "unrecognized_role", 3),
    "content_number": (dataset(messages({"role": "user", "content": 42}, REPLY)), 1,
                       "content_not_string", 3),
    "content_null": (dataset(messages({"role": "user", "content": None}, REPLY)), 1,
                     "content_not_string", 3),
    "content_parts": (dataset(messages({"role": "user", "content": [{"type": "text"}]}, REPLY)),
                      1, "content_not_string", 3),
    "no_assistant": (dataset(messages(USER)), 1, "no_assistant_message", 3),
    "blank_assistant": (dataset(messages(USER, {"role": "assistant", "content": "  \n"})), 1,
                        "blank_assistant_content", 3),
    "weight_two": (dataset(messages(USER, {**REPLY, "weight": 2})), 1, "invalid_weight", 3),
    "weight_bool": (dataset(messages(USER, {**REPLY, "weight": True})), 1, "invalid_weight", 3),
    "weight_float": (dataset(messages(USER, {**REPLY, "weight": 0.5})), 1, "invalid_weight", 3),
    "too_few": (dataset(valid=3), 1, "too_few_examples", None),
    "empty_file": (b"", 1, "too_few_examples", None),
    "only_blank_lines": (b"\n\n  \n", 1, "too_few_examples", None),
    "binary_garbage": (dataset(bytes(range(11, 256)), at=1), 1, "invalid_utf8", 1),
    "binary_control_bytes": (dataset(bytes(range(0, 10)), at=5), 1, "invalid_json", 5),
    "deeply_nested": (dataset(b"[" * 200_000 + b"]" * 200_000, at=7), 1, "invalid_json", 7),
    "nested_content": (dataset(messages({"role": "user", "content": json.loads(
        "[" * 500 + "]" * 500)}, REPLY), at=2), 1, "content_not_string", 2),
    "crlf_error_line": (dataset(b'{"messages": [', at=4, eol=b"\r\n"), 1, "invalid_json", 4),
    "bom_then_error": (dataset(b"{oops", at=1, prefix=b"\xef\xbb\xbf"), 1, "invalid_json", 1),
    "error_after_blank_lines": (b"\n\n" + dataset(b"{", at=2), 1, "invalid_json", 4),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_malformed_case(name: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    content, exit_code, code, line = CASES[name]
    path = tmp_path / "data.jsonl"
    path.write_bytes(content)
    assert main(["data", "check", str(path), "--json"]) == exit_code
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    assert {"line": line, "code": code} in [
        {"line": error["line"], "code": error["code"]} for error in report["errors"]]


def test_every_error_code_is_exercised() -> None:
    from tunelab.data.rules import ERRORS

    assert set(ERRORS) <= {code for _, _, code, _ in CASES.values()}


@pytest.mark.parametrize("eol, prefix", [(b"\r\n", b""), (b"\n", b"\xef\xbb\xbf"),
                                         (b"\r\n", b"\xef\xbb\xbf")])
def test_crlf_and_bom_files_are_valid(eol: bytes, prefix: bytes, tmp_path: Path,
                                      capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "data.jsonl"
    path.write_bytes(dataset(eol=eol, prefix=prefix))
    assert main(["data", "check", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["examples"] == 10 and report["warnings"] == []


def test_multi_megabyte_line_is_read_counted_and_flagged(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    huge = messages(GOOD["messages"][0], USER,
                    {"role": "assistant", "content": "river " * 600_000})  # 3.6 MB
    path = tmp_path / "data.jsonl"
    path.write_bytes(dataset(huge, at=6))
    assert main(["data", "check", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["tokens"]["per_example"]["max"] > 600_000
    [warning] = report["warnings"]
    assert (warning["line"], warning["code"]) == (6, "over_context_limit")
    assert "message 3 (assistant" in warning["message"]
    assert report["billing_tokens"] < report["tokens"]["total"]  # capped at the limit


def test_human_output_lists_the_first_errors(tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "data.jsonl"
    path.write_bytes(dataset(b"{", at=2) + b'{"messages": []}\n')
    assert main(["data", "check", str(path)]) == 1
    out = capsys.readouterr().out
    assert "❌ 2 errors" in out
    assert "line 2: invalid_json" in out and "line 12: empty_messages" in out
    assert "Traceback" not in out


@pytest.mark.parametrize("argv_tail, message", [
    (["missing.jsonl"], "no such file"),
    (["."], "is a directory"),
    (["notes.txt"], "unknown extension"),
    (["data.jsonl", "--provider", "acme"], "--provider 'acme' is not known"),
    (["data.jsonl", "--epochs", "0"], "--epochs 0 is out of range"),
    (["bad_header.csv"], "lacks answer"),
    (["stray_cr.csv"], "stray_cr.csv:2: unreadable CSV"),
])
def test_unreadable_input_or_bad_usage_exits_2(argv_tail: list[str], message: str,
                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "data.jsonl").write_bytes(dataset())
    (tmp_path / "bad_header.csv").write_text("question,reply\nhi,yo\n")
    (tmp_path / "stray_cr.csv").write_bytes(b"question,answer\nq\rx,a\n")
    assert main(["data", "check", *argv_tail]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and "Traceback" not in captured.err + captured.out


def test_json_array_errors_name_the_element_line(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    elements = [json.dumps(json.loads(good_line(i)), indent=1) for i in range(10)]
    text = "[\n" + ",\n".join(elements) + ",\n  [1]\n]\n"
    path = tmp_path / "data.json"
    path.write_text(text)
    assert main(["data", "check", str(path), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    expected_line = text[:text.index("[1]")].count("\n") + 1
    assert [(e["line"], e["code"]) for e in report["errors"]] == [(expected_line, "not_an_object")]


@pytest.mark.parametrize("text, line", [('{"messages": []}', 1),
                                        ('[\n{"messages": [\n', 2),
                                        ('[\n{"messages": 1}\n{"messages": 2}]', 3)])
def test_broken_json_arrays(text: str, line: int, tmp_path: Path,
                            capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "data.json"
    path.write_text(text)
    assert main(["data", "check", str(path), "--json"]) == 1
    errors = json.loads(capsys.readouterr().out)["errors"]
    assert (line, "invalid_json") in [(error["line"], error["code"]) for error in errors]


def test_csv_bad_bytes_are_reported_on_their_row(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    rows = [f"question {i},answer {i},be kind" for i in range(10)]
    rows.insert(4, "bad \xff,x,y")
    path = tmp_path / "data.csv"
    path.write_bytes(b"question,answer,system\n"
                     + "\n".join(rows).encode("utf-8").replace(b"\xc3\xbf", b"\xff") + b"\n")
    assert main(["data", "check", str(path), "--json"]) == 1
    errors = json.loads(capsys.readouterr().out)["errors"]
    assert [(e["line"], e["code"]) for e in errors] == [(6, "invalid_utf8")]
