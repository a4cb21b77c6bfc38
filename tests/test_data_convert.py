"""`data convert` and `data split`: round trips, refusals, and never losing the user's files."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunelab.cli import main
from tunelab.data.convert import convert
from tunelab.data.reader import load_examples

# Any text JSON and CSV can carry: no lone surrogates (not valid UTF-8 on disk).
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
REPLY = TEXT.filter(lambda text: text.strip() != "")  # OpenAI rejects blank replies


@st.composite
def examples(draw, max_turns: int = 3) -> dict:
    messages = []
    if draw(st.booleans()):
        messages.append({"role": "system", "content": draw(REPLY)})
    for _ in range(draw(st.integers(1, max_turns))):
        messages += [{"role": "user", "content": draw(TEXT)},
                     {"role": "assistant", "content": draw(REPLY)}]
    return {"messages": messages}


def write_jsonl(path: Path, items: list[dict]) -> None:
    path.write_text("".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items),
                    encoding="utf-8")


def round_trip(items: list[dict], middle_name: str) -> list[dict]:
    with tempfile.TemporaryDirectory() as folder:
        source, middle, back = (Path(folder) / name for name in
                                ("in.jsonl", middle_name, "back.jsonl"))
        write_jsonl(source, items)
        convert(source, middle)
        convert(middle, back)
        return load_examples(back)


ROUND_TRIP = settings(max_examples=40, deadline=None,
                      suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("middle", ["x_gemini.jsonl", "x_sharegpt.jsonl", "x_alpaca.jsonl",
                                    "x_sharegpt.json", "x.json", "x.jsonl"])
@ROUND_TRIP
@given(items=st.lists(examples(), min_size=1, max_size=4))
def test_openai_round_trips_through_every_json_format(middle: str, items: list[dict]) -> None:
    assert round_trip(items, middle) == items


@ROUND_TRIP
@given(items=st.lists(examples(max_turns=1), min_size=1, max_size=4))
def test_single_turn_examples_round_trip_through_csv(items: list[dict]) -> None:
    assert round_trip(items, "x.csv") == items


def test_format_is_taken_from_the_output_name(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "in.jsonl", [{"messages": [{"role": "user", "content": "hi"},
                                                      {"role": "assistant", "content": "yo"}]}])
    expected = {"vertex_train.jsonl": {"contents": [{"role": "user", "parts": [{"text": "hi"}]},
                                                    {"role": "model", "parts": [{"text": "yo"}]}]},
                "chat_sharegpt.jsonl": {"conversations": [{"from": "human", "value": "hi"},
                                                          {"from": "gpt", "value": "yo"}]},
                "alpaca.jsonl": {"instruction": "hi", "input": "", "output": "yo"}}
    for name, record in expected.items():
        assert main(["data", "convert", str(tmp_path / "in.jsonl"), str(tmp_path / name)]) == 0
        assert json.loads((tmp_path / name).read_text()) == record
    assert main(["data", "convert", str(tmp_path / "in.jsonl"), str(tmp_path / "q.csv")]) == 0
    assert (tmp_path / "q.csv").read_bytes() == b"question,answer,system\r\nhi,yo,\r\n"


def test_alpaca_input_field_joins_the_instruction(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", [{"instruction": "Translate", "input": "душа",
                                        "output": "soul"}])
    convert(tmp_path / "a.jsonl", tmp_path / "o.jsonl")
    assert load_examples(tmp_path / "o.jsonl")[0]["messages"][0] == {
        "role": "user", "content": "Translate\n\nдуша"}


def test_existing_output_is_kept_unless_forced(tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    write_jsonl(tmp_path / "in.jsonl", [{"messages": [{"role": "user", "content": "hi"},
                                                      {"role": "assistant", "content": "yo"}]}])
    out = tmp_path / "out_sharegpt.jsonl"
    out.write_text("precious\n")
    assert main(["data", "convert", str(tmp_path / "in.jsonl"), str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert out.read_text() == "precious\n"
    assert main(["data", "convert", str(tmp_path / "in.jsonl"), str(out), "--force",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"examples": 1, "from": "openai",
                                                   "to": "sharegpt", "out": str(out)}
    assert "conversations" in out.read_text()


def test_what_the_target_cannot_hold_stops_without_touching_out(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    multi = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                          {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]}
    single = {"messages": multi["messages"][:2]}
    write_jsonl(tmp_path / "in.jsonl", [single, multi])
    out = tmp_path / "out.csv"
    out.write_text("old\n")
    assert main(["data", "convert", str(tmp_path / "in.jsonl"), str(out), "--force"]) == 1
    err = capsys.readouterr().err
    assert "in.jsonl:2:" in err and "multi-turn" in err
    assert out.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left


@pytest.mark.parametrize("argv_tail, message", [
    (["out.jsonl", "--to", "yaml"], "--to 'yaml' is not a format"),
    (["out.jsonl", "--to", "csv"], "does not fit"),
    (["out.txt"], "unknown extension"),
    (["missing/out.jsonl"], "does not exist"),
])
def test_convert_usage_errors(argv_tail: list[str], message: str, tmp_path: Path,
                              monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "in.jsonl", [{"messages": [{"role": "user", "content": "hi"},
                                                      {"role": "assistant", "content": "yo"}]}])
    assert main(["data", "convert", "in.jsonl", *argv_tail]) == 2
    assert message in capsys.readouterr().err


def test_invalid_input_names_its_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "in.jsonl").write_text('{"messages": [{"role": "user", "content": "q"}]}\n'
                                       "{oops\n")
    assert main(["data", "convert", str(tmp_path / "in.jsonl"), str(tmp_path / "o.jsonl")]) == 1
    assert "in.jsonl:1: no_assistant_message" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()


def numbered(count: int) -> list[dict]:
    return [{"messages": [{"role": "user", "content": f"q{i}"},
                          {"role": "assistant", "content": f"a{i}"}]} for i in range(count)]


def test_split_is_deterministic_complete_and_ordered(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    write_jsonl(tmp_path / "natasha.jsonl", numbered(50))
    runs = []
    for folder, seed in (("a", "0"), ("b", "0"), ("c", "7")):
        (tmp_path / folder).mkdir()
        assert main(["data", "split", str(tmp_path / "natasha.jsonl"), "--val", "0.2",
                     "--seed", seed, "--out-dir", str(tmp_path / folder), "--json"]) == 0
        result = json.loads(capsys.readouterr().out)
        assert (result["train"], result["val"]) == (40, 10)
        train = load_examples(tmp_path / folder / "natasha_train.jsonl")
        val = load_examples(tmp_path / folder / "natasha_val.jsonl")
        runs.append((train, val))
    assert runs[0] == runs[1] and runs[0] != runs[2]
    train, val = runs[0]
    assert sorted(map(json.dumps, train + val)) == sorted(map(json.dumps, numbered(50)))
    indices = [int(example["messages"][0]["content"][1:]) for example in train]
    assert indices == sorted(indices)


def test_split_refuses_to_overwrite_and_checks_val(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    write_jsonl(tmp_path / "d.jsonl", numbered(10))
    (tmp_path / "d_val.jsonl").write_text("mine\n")
    assert main(["data", "split", str(tmp_path / "d.jsonl")]) == 2
    assert "d_val.jsonl already exists" in capsys.readouterr().err
    assert (tmp_path / "d_val.jsonl").read_text() == "mine\n"
    assert not (tmp_path / "d_train.jsonl").exists()
    assert main(["data", "split", str(tmp_path / "d.jsonl"), "--val", "1.5"]) == 2
    assert "--val 1.5" in capsys.readouterr().err


def test_split_reads_csv_and_writes_openai(tmp_path: Path) -> None:
    rows = "".join(f"q{i},a{i},be warm\n" for i in range(10))
    (tmp_path / "d.csv").write_text("question,answer,system\n" + rows)
    assert main(["data", "split", str(tmp_path / "d.csv"), "--val", "0.3"]) == 0
    val = load_examples(tmp_path / "d_val.jsonl")
    assert len(val) == 3 and val[0]["messages"][0] == {"role": "system", "content": "be warm"}
