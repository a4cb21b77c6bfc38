"""Preference pairs (OpenAI's DPO rows) through `data check`, `data cost` and `data convert`,
and the run's method checked against the file before anything is sent."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from tunelab.cli import main
from tunelab.data.preference import PAIR_ERRORS, PreferencePair, read_pairs
from tunelab.data.pricing import load_pricing
from tunelab.data.tokens import load_encoding
from tunelab.errors import DataError
from tunelab.home import home
from tunelab.runs.checks import check_data

SYSTEM = {"role": "system", "content": "You are Natasha."}
ANSWER = {"role": "assistant", "content": "Money is a river; you stand on the bank."}
GENERIC = {"role": "assistant", "content": "As an AI language model, I cannot feel fear."}


def pair(index: int = 0, *, system: bool = True) -> dict:
    messages = [SYSTEM] if system else []
    messages.append({"role": "user", "content": f"Why am I afraid of money? ({index})"})
    return {"input": {"messages": messages}, "preferred_output": [dict(ANSWER)],
            "non_preferred_output": [dict(GENERIC)]}


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows),
                    encoding="utf-8")
    return path


def changed(**keys) -> dict:
    row = pair(99)
    row.update(copy.deepcopy(keys))
    return row


def without(key: str) -> dict:
    return {name: value for name, value in pair(98).items() if name != key}


# line -> (row, the code its error carries, a phrase of the message). Lines 1-10 are valid.
BROKEN = {
    11: (changed(preferred_output=[]), "empty_output", "preferred_output: the output list"),
    12: (without("non_preferred_output"), "missing_output", "non_preferred_output is missing"),
    13: (changed(preferred_output=[ANSWER, GENERIC]), "output_not_single", "holds 2 messages"),
    14: (changed(non_preferred_output=[{"role": "user", "content": "x"}]),
         "output_not_assistant", "role 'user'"),
    15: (changed(input={"messages": [SYSTEM, {"role": "user", "content": "q"}, GENERIC]}),
         "last_input_not_user", "input ends on a 'assistant' message"),
    16: (changed(non_preferred_output=[{"role": "assistant",
                                        "content": ANSWER["content"] + "  "}]),
         "identical_outputs", "are the same"),
    17: (changed(score=0.9), "unrecognized_key", "'score' not allowed"),
    18: (changed(input={"messages": [SYSTEM, {"role": "user", "content": "q", "lang": "ru"}]}),
         "unrecognized_key", "input message 2: 'lang' not allowed"),
    19: ({"messages": [{"role": "user", "content": "hi"}, ANSWER]}, "mixed_formats",
         "a chat example in a file of preference pairs"),
    20: (changed(input={"messages": []}), "empty_input", "input.messages is empty"),
    21: (changed(input={"messages": [{"role": "user", "content": "q"}], "tools": {}}),
         "invalid_tools", "input.tools must be a list"),
    22: (without("input"), "missing_input", "no input"),
    23: (changed(preferred_output=[{"role": "assistant", "content": " "}]),
         "blank_assistant_content", "preferred_output: an assistant message has empty"),
}


def test_every_pair_error_names_its_line_code_and_fix(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    rows = [pair(index) for index in range(10)] + [row for row, _, _ in BROKEN.values()]
    path = write_jsonl(tmp_path / "prefs.jsonl", rows)
    assert main(["data", "check", str(path), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["format"] == "preference" and report["valid_examples"] == 10
    found = {(error["line"], error["code"]): error["message"] for error in report["errors"]}
    for line, (_, code, phrase) in BROKEN.items():
        assert phrase in found[(line, code)], (line, found)
    assert len(found) == len(BROKEN)  # and the valid rows carry none
    assert set(PAIR_ERRORS) <= {code for _, code, _ in BROKEN.values()}
    assert "add --method dpo" not in found[(19, "mixed_formats")]  # the file's fix, below
    assert main(["data", "check", str(path)]) == 1
    captured = capsys.readouterr()
    assert "line 13: output_not_single preferred_output holds 2 messages; an output list " \
           "holds exactly one assistant message" in captured.out
    assert "13 data errors in" in captured.err


def test_a_pair_in_a_chat_file_is_named_by_its_line(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    chats = [{"messages": [SYSTEM, {"role": "user", "content": f"q{index}"}, ANSWER]}
             for index in range(10)]
    path = write_jsonl(tmp_path / "chat.jsonl", [*chats[:4], pair(), *chats[4:]])
    assert main(["data", "check", str(path), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["format"] == "chat" and report["method"] == "supervised"
    [error] = report["errors"]
    assert (error["line"], error["code"]) == (5, "mixed_formats")
    assert "a preference pair in a file of chat examples" in error["message"]


def cookbook_tokens(messages: list[dict]) -> int:
    """OpenAI's cookbook count, on tiktoken itself: 3 per message + its strings, 3 priming."""
    encode = load_encoding("o200k_base").encode_ordinary
    return 3 + sum(3 + len(encode(m["role"])) + len(encode(m["content"])) for m in messages)


def test_pairs_are_counted_once_per_input_and_priced_for_dpo(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rows = [pair(index) for index in range(12)]
    path = write_jsonl(tmp_path / "prefs.jsonl", rows)
    assert main(["data", "check", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["format"], report["method"]) == ("preference", "dpo")
    assert report["model"] == "gpt-4.1-mini-2025-04-14"  # the default that trains DPO
    expected = [cookbook_tokens([*row["input"]["messages"], ANSWER])
                + cookbook_tokens([*row["input"]["messages"], GENERIC])
                - cookbook_tokens(row["input"]["messages"]) for row in rows]
    assert report["tokens"]["total"] == sum(expected) == report["billing_tokens"]
    assert report["tokens"]["counted_as"].startswith("input once + preferred + non-preferred")
    epochs = report["epochs"]
    rows_by_model = {(row["provider"], row["model"]): row for row in report["cost"]}
    takers = {(price.provider, price.model) for price in load_pricing() if price.offers_dpo}
    assert set(rows_by_model) == takers  # only the models that take DPO, on every provider
    assert {("openai", f"gpt-4.1{size}-2025-04-14") for size in ("", "-mini", "-nano")} \
        <= takers and ("openai", "gpt-4o-mini-2024-07-18") not in takers
    assert {"together", "fireworks", "azure"} <= {provider for provider, _ in takers}
    mini = rows_by_model[("openai", "gpt-4.1-mini-2025-04-14")]
    assert mini["method"] == "dpo" and mini["training_cost"] is None  # no source gives it
    assert mini["training_tokens"] == report["billing_tokens"] * epochs
    assert rows_by_model[("openai", "gpt-4.1-nano-2025-04-14")]["status"] == "shut_down"
    assert main(["data", "check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "DPO training cost" in out and "unknown" in out and "preference pairs" in out
    assert out.rstrip().splitlines()[-1] == "✅ Validation passed: 12 preference pairs"


def test_a_dpo_price_in_the_table_prices_the_pairs(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    together = {"provider": "together", "model": "Qwen/Qwen3-8B", "training_per_1m": 0.5,
                "input_per_1m": 0.2, "output_per_1m": 0.2, "max_train_tokens": 32768,
                "as_of": "2026-12-01", "source": "https://example.com/together",
                "dpo_source": "https://example.com/together-dpo", "dpo_training_per_1m": 1.25}
    mini = {"provider": "openai", "model": "gpt-4.1-mini-2025-04-14", "dpo_training_per_1m": 7.5}
    home().mkdir(parents=True, exist_ok=True)
    (home() / "pricing.json").write_text(json.dumps({"models": [together, mini]}))
    path = write_jsonl(tmp_path / "prefs.jsonl", [pair(index) for index in range(12)])
    assert main(["data", "cost", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["format"], report["method"]) == ("preference", "dpo")
    rows = {(row["provider"], row["model"]): row for row in report["cost"]}
    priced = rows[("openai", "gpt-4.1-mini-2025-04-14")]
    assert priced["training_cost"] == pytest.approx(priced["training_tokens"] * 7.5 / 1e6)
    priced = rows[("together", "Qwen/Qwen3-8B")]
    assert priced["training_cost"] == pytest.approx(priced["training_tokens"] * 1.25 / 1e6)
    assert rows[("openai", "gpt-4.1-2025-04-14")]["training_cost"] is None
    assert main(["data", "cost", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Qwen3-8B" in out and "unknown" in out and "12 preference pairs" in out


def test_an_over_long_pair_warns_with_the_limit_chat_rows_get(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    long = pair(50)
    long["input"]["messages"][1]["content"] = "tell me everything " * 7000
    path = write_jsonl(tmp_path / "prefs.jsonl", [pair(index) for index in range(10)] + [long])
    assert main(["data", "check", str(path), "--model", "gpt-3.5-turbo", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    warnings = {warning["code"]: warning for warning in report["warnings"]}
    cut = warnings["over_context_limit"]
    assert cut["line"] == 11 and "> 16,385 for gpt-3.5-turbo" in cut["message"]
    assert "the whole answer and the input's last" in cut["message"]
    # gpt-3.5 trains no DPO: said once, for the file, with the models that do
    assert warnings["no_dpo_on_target"]["line"] is None
    assert "--model gpt-4.1-2025-04-14 or gpt-4.1-mini-2025-04-14" in \
        warnings["no_dpo_on_target"]["message"]
    # each sequence is cut at the limit, the input billed once: the long pair bills 16,385
    assert report["billing_tokens"] == report["tokens"]["total"] - (
        report["tokens"]["per_example"]["max"] - 16_385)
    assert main(["data", "check", str(path), "--provider", "vertex"]) == 0
    out = capsys.readouterr().out
    assert "1 × no_dpo_on_target: gemini-2.5-flash on vertex trains no DPO" in out
    assert "pick a provider that does\n" in out  # a file-level warning names no line


def test_the_runs_method_must_match_the_file(tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    pairs = write_jsonl(tmp_path / "prefs.jsonl", [pair(index) for index in range(10)])
    chats = write_jsonl(tmp_path / "chat.jsonl", [
        {"messages": [{"role": "user", "content": f"q{index}"}, ANSWER]} for index in range(10)])
    with pytest.raises(DataError, match=r"prefs.jsonl: .*preference pairs.* — add --method dpo"):
        check_data(pairs, provider="openai", model=None, epochs=None)
    with pytest.raises(DataError, match=r"chat.jsonl: .*chat examples.*drop --method dpo"):
        check_data(chats, provider="openai", model=None, epochs=None, method="dpo")
    assert check_data(pairs, provider="openai", model=None, epochs=None, method="dpo").ok
    # through the door: refused before any key is asked for or any byte sent
    assert main(["train", str(pairs), "--provider", "openai", "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert "add --method dpo" in err and "API key" not in err and len(err.splitlines()) == 1


def test_read_pairs_gives_typed_pairs_or_the_first_bad_line(tmp_path: Path) -> None:
    rows = [pair(0), pair(1, system=False)]
    rows[1]["input"]["tools"] = [{"type": "function", "function": {"name": "f"}}]
    pairs = read_pairs(write_jsonl(tmp_path / "prefs.jsonl", rows))
    assert pairs[0] == PreferencePair(rows[0]["input"]["messages"], ANSWER, GENERIC)
    assert pairs[1].line == 2 and pairs[1].tools == rows[1]["input"]["tools"]
    assert pairs[0].chosen[-1] == ANSWER and pairs[0].rejected[-1] == GENERIC
    assert [item.as_row() for item in pairs] == rows
    bad = write_jsonl(tmp_path / "bad.jsonl", [pair(0), changed(preferred_output=[])])
    with pytest.raises(DataError, match=r"bad.jsonl:2: empty_output"):
        read_pairs(bad)


# --- data convert -------------------------------------------------------------------------

MULTI_TURN = {"input": {"messages": [
    SYSTEM, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello, dear."},
    {"role": "user", "content": "Why am I afraid of money?"}]},
    "preferred_output": [ANSWER], "non_preferred_output": [GENERIC]}
SINGLE = {"input": {"messages": [{"role": "user", "content": "Почему я боюсь денег?"}]},
          "preferred_output": [ANSWER], "non_preferred_output": [GENERIC]}


@pytest.mark.parametrize("shape, rows", [
    ("trl", [MULTI_TURN, SINGLE]), ("trl-implicit", [MULTI_TURN, SINGLE]),
    ("alpaca", [MULTI_TURN, SINGLE]), ("sharegpt", [MULTI_TURN, SINGLE]),
    ("trl-text", [SINGLE, SINGLE]), ("openai", [MULTI_TURN]),
])
def test_every_shape_round_trips_to_the_same_openai_rows(
        shape: str, rows: list[dict], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    middle, back = tmp_path / "middle.json", tmp_path / "back.jsonl"
    assert main(["data", "convert", str(source), str(middle), "--to", shape]) == 0
    assert main(["data", "convert", str(middle), str(back), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert result == {"examples": len(rows), "from": shape, "to": "openai", "out": str(back),
                      "format": "preference"}
    assert [json.loads(line) for line in back.read_text().splitlines()] == rows


NATIVE = {  # each source's own shape -> the OpenAI row it means
    "trl-text": ({"prompt": "Почему я боюсь денег?", "chosen": ANSWER["content"],
                  "rejected": GENERIC["content"]}, SINGLE),
    "trl": ({"prompt": MULTI_TURN["input"]["messages"], "chosen": [ANSWER],
             "rejected": [GENERIC]}, MULTI_TURN),
    "trl-implicit": ({"chosen": [*MULTI_TURN["input"]["messages"], ANSWER],
                      "rejected": [*MULTI_TURN["input"]["messages"], GENERIC]}, MULTI_TURN),
    "alpaca": ({"instruction": "Why am I afraid of money?", "input": "", "system":
                "You are Natasha.", "history": [["Hi", "Hello, dear."]],
                "chosen": ANSWER["content"], "rejected": GENERIC["content"]}, MULTI_TURN),
    "sharegpt": ({"conversations": [{"from": "human", "value": "Hi"},
                                    {"from": "gpt", "value": "Hello, dear."},
                                    {"from": "human", "value": "Why am I afraid of money?"}],
                  "system": "You are Natasha.",
                  "chosen": {"from": "gpt", "value": ANSWER["content"]},
                  "rejected": {"from": "gpt", "value": GENERIC["content"]}}, MULTI_TURN),
}


@pytest.mark.parametrize("shape", sorted(NATIVE))
def test_each_source_shape_reads_into_openai_rows(shape: str, tmp_path: Path) -> None:
    native, expected = NATIVE[shape]
    source = write_jsonl(tmp_path / "in.jsonl", [native])
    assert main(["data", "convert", str(source), str(tmp_path / "out.jsonl")]) == 0
    assert json.loads((tmp_path / "out.jsonl").read_text()) == expected


def test_a_row_that_cannot_be_mapped_is_named_by_line(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    native = NATIVE["trl-implicit"][0]
    forked = json.loads(json.dumps(native))  # its own messages, none shared by both sides
    forked["rejected"][1]["content"] = "Hey."  # differs before its last message
    source = write_jsonl(tmp_path / "in.jsonl", [native, native, forked, native])
    out = tmp_path / "out.jsonl"
    assert main(["data", "convert", str(source), str(out)]) == 1
    err = capsys.readouterr().err
    assert "in.jsonl:3: chosen (5 messages) and rejected (5) share 1 leading message(s)" in err
    assert not out.exists()  # nothing written, nothing dropped silently
    trl = write_jsonl(tmp_path / "trl.jsonl", [NATIVE["trl"][0], NATIVE["trl-text"][0]])
    assert main(["data", "convert", str(trl), str(out)]) == 1
    assert 'trl.jsonl:2: a TRL conversational row needs "prompt" as a list' in \
        capsys.readouterr().err
    text = write_jsonl(tmp_path / "t.jsonl", [pair(0)])  # a system prompt: not in trl-text
    assert main(["data", "convert", str(text), str(out), "--to", "trl-text"]) == 1
    assert "t.jsonl:1: TRL's text form holds one user prompt" in capsys.readouterr().err


def test_pairs_and_chat_formats_do_not_cross(tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    chat = write_jsonl(tmp_path / "chat.jsonl", [{"messages": [
        {"role": "user", "content": "q"}, ANSWER]}])
    assert main(["data", "convert", str(chat), str(tmp_path / "o.jsonl"), "--to", "trl"]) == 2
    assert "--to trl is a preference-pair shape" in capsys.readouterr().err
    pairs = write_jsonl(tmp_path / "p.jsonl", [pair(0)])
    assert main(["data", "convert", str(pairs), str(tmp_path / "o.jsonl"), "--to", "gemini"]) == 2
    assert "--to gemini does not hold preference pairs" in capsys.readouterr().err
    assert main(["data", "convert", str(pairs), str(tmp_path / "o.csv")]) == 2
    mixed = write_jsonl(tmp_path / "m.jsonl", [json.loads(chat.read_text()), pair(1)])
    assert main(["data", "convert", str(mixed), str(tmp_path / "o.jsonl")]) == 1
    assert "m.jsonl:2: a preference pair where chat examples are read" in \
        capsys.readouterr().err


def test_the_servers_streaming_check_names_the_method_a_row_needs(tmp_path: Path) -> None:
    from tunelab.data.stream_check import count_examples

    pairs = write_jsonl(tmp_path / "prefs.jsonl", [pair(0), pair(1)])
    chats = write_jsonl(tmp_path / "chat.jsonl", [{"messages": [
        {"role": "user", "content": "q"}, ANSWER]}, pair(2)])
    assert count_examples(pairs, method="dpo") == 2
    with pytest.raises(DataError, match=r"prefs.jsonl:1: mixed_formats: a preference pair, "
                                        r"which trains only with method dpo"):
        count_examples(pairs)
    with pytest.raises(DataError, match=r"chat.jsonl:1: mixed_formats: a chat example"):
        count_examples(chats, method="dpo")
    with pytest.raises(DataError, match=r"chat.jsonl:2: mixed_formats: a preference pair"):
        count_examples(chats)


def test_a_big_pair_file_checked_in_parallel_reports_as_in_one_process(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tunelab.data import parallel
    from tunelab.data.check import check_file

    rows = [pair(index % 150) for index in range(400)]
    rows[200] = changed(preferred_output=[])
    rows[300] = {"messages": [{"role": "user", "content": "q"}, ANSWER]}
    path = write_jsonl(tmp_path / "big.jsonl", rows)
    serial = check_file(path, workers=1).as_dict()
    monkeypatch.setattr(parallel, "RANGE_BYTES", 4096)
    assert len(parallel.plan(path, 2)) > 5
    assert check_file(path, workers=2).as_dict() == serial
    assert [(e["line"], e["code"]) for e in serial["errors"]] == [
        (201, "empty_output"), (301, "mixed_formats")]
    assert serial["warning_counts"] == {"duplicate_example": 398 - 150}
