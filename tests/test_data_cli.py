"""`tunelab data check` and `data cost` as a user runs them: output, JSON, prices, targets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunelab.cli import main
from tunelab.data.pricing import find_price, inference_cost_per_1k, load_pricing
from tunelab.home import home


def write_dataset(path: Path, count: int = 12, *, system: bool = True) -> Path:
    lines = []
    for index in range(count):
        messages = [{"role": "system", "content": "You are Natasha."}] if system else []
        messages += [{"role": "user", "content": f"Why am I afraid of money? ({index})"},
                     {"role": "assistant", "content": "Money is a river; you stand on the bank."}]
        lines.append(json.dumps({"messages": messages}))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_valid_file_ends_like_the_seeds(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = write_dataset(tmp_path / "train.jsonl")
    assert main(["data", "check", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().splitlines()[-1] == "✅ Validation passed: 12 training examples"
    assert "gpt-4o-mini-2024-07-18" in out and "o200k_base" in out


def test_json_report_has_the_promised_fields(tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    path = write_dataset(tmp_path / "train.jsonl", 40)
    assert main(["data", "check", str(path), "--json", "--epochs", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and report["examples"] == 40
    assert report["errors"] == [] and report["warnings"] == []
    assert set(report["tokens"]["per_example"]) == {"min", "mean", "p50", "p95", "max"}
    assert report["tokens"]["assistant"] < report["tokens"]["total"]
    assert report["billing_tokens"] == report["tokens"]["total"]
    assert report["epochs"] == 2
    assert report["messages_per_example"]["mean"] == 3
    mini = next(row for row in report["cost"] if row["model"] == "gpt-4o-mini-2024-07-18")
    assert mini["training_tokens"] == 2 * report["billing_tokens"]
    assert mini["training_cost"] == pytest.approx(mini["training_tokens"] * 3.0 / 1e6)


def test_default_epochs_follow_openai_for_small_files(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    path = write_dataset(tmp_path / "train.jsonl", 12)
    assert main(["data", "check", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["epochs"] == 8  # 100 // 12


def test_warnings_do_not_fail_the_check(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = write_dataset(tmp_path / "train.jsonl", 10, system=False)
    lines = path.read_text().splitlines()
    lines.append(lines[0])  # an exact duplicate of line 1
    lines.append(json.dumps({"messages": [{"role": "user", "content": "a"},
                                          {"role": "assistant", "content": "b"},
                                          {"role": "user", "content": "and then?"}]}))
    path.write_text("\n".join(lines) + "\n")
    assert main(["data", "check", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["warning_counts"] == {"no_system_message": 12, "duplicate_example": 1,
                                        "ends_with_user": 1}
    duplicate = next(w for w in report["warnings"] if w["code"] == "duplicate_example")
    assert (duplicate["line"], duplicate["message"]) == (11, "same as line 1")


def test_over_limit_warning_says_what_is_cut(tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    path = write_dataset(tmp_path / "train.jsonl", 10)
    long = {"messages": [{"role": "system", "content": "You are Natasha."},
                         {"role": "user", "content": "tell me everything " * 7000},
                         {"role": "assistant", "content": "ok"}]}
    path.write_text(path.read_text() + json.dumps(long) + "\n")
    assert main(["data", "check", str(path), "--model", "gpt-3.5-turbo", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    [warning] = report["warnings"]
    assert warning["line"] == 11 and warning["code"] == "over_context_limit"
    assert "16,385" in warning["message"] and "from message 2 (user" in warning["message"]
    assert report["tokenizer"] == "cl100k_base"
    assert report["tokens"]["per_example"]["max"] > 16_385
    assert report["billing_tokens"] == report["tokens"]["total"] - (
        report["tokens"]["per_example"]["max"] - 16_385)


def test_cost_table_shows_kimi_inference_but_no_training(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    path = write_dataset(tmp_path / "train.jsonl")
    assert main(["data", "cost", str(path), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["cost"]
    kimi = [row for row in rows if row["provider"] == "kimi"]
    assert kimi and all(row["training_cost"] is None and row["inference_per_1k"] > 0
                        for row in kimi)
    assert {row["provider"] for row in rows} >= {"openai", "vertex", "kimi", "local"}
    assert all(row["as_of"] and row["source"].startswith("https://") for row in rows)
    assert main(["data", "cost", str(path)]) == 0
    out = capsys.readouterr().out
    assert "moonshot-v1-8k" in out and "gemini-2.5-flash" in out


def test_pricing_file_in_home_overrides_and_extends(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    row = {"provider": "openai", "model": "gpt-4o-mini-2024-07-18", "training_per_1m": 1000.0,
           "input_per_1m": 1.0, "output_per_1m": 1.0, "max_train_tokens": 65536,
           "as_of": "2030-01-01", "source": "https://example.com/negotiated"}
    extra = {**row, "provider": "acme", "model": "acme-1", "training_per_1m": None}
    packaged = len(load_pricing())
    home().mkdir(parents=True, exist_ok=True)  # home() names the folder, creates nothing
    (home() / "pricing.json").write_text(json.dumps({"models": [row, extra]}))
    assert find_price("openai", "gpt-4o-mini").training_per_1m == 1000.0
    assert inference_cost_per_1k("acme", "acme-1", 1000, 1000) == pytest.approx(2.0)
    assert len(load_pricing()) == packaged + 1  # one row replaced, one added
    path = write_dataset(tmp_path / "train.jsonl")
    assert main(["data", "cost", str(path), "--json"]) == 0
    mini = json.loads(capsys.readouterr().out)["cost"][0]
    assert mini["training_cost"] == pytest.approx(mini["training_tokens"] * 1000.0 / 1e6)


def test_broken_pricing_file_is_a_usage_error(tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    home().mkdir(parents=True, exist_ok=True)
    (home() / "pricing.json").write_text('{"models": [{"provider": "openai"}]}')
    assert main(["data", "cost", str(write_dataset(tmp_path / "t.jsonl"))]) == 2
    assert "pricing.json: not a valid price table" in capsys.readouterr().err


def test_cost_of_a_file_with_errors_exits_1(tmp_path: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    path = write_dataset(tmp_path / "train.jsonl")
    path.write_text(path.read_text() + "{oops\n")
    assert main(["data", "cost", str(path)]) == 1
    assert "1 data error in" in capsys.readouterr().err


def test_vertex_target_uses_the_documented_estimate(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    path = write_dataset(tmp_path / "train.jsonl")
    assert main(["data", "check", str(path), "--provider", "vertex", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["model"], report["tokenizer"]) == ("gemini-2.5-flash", "o200k_base")
    assert report["max_tokens_per_example"] == 131072
    assert main(["data", "check", "--help"]) == 0
    assert "Gemini" in capsys.readouterr().out


def test_csv_and_json_inputs_give_the_same_report(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    jsonl = write_dataset(tmp_path / "train.jsonl")
    for name in ("train.csv", "train.json"):
        assert main(["data", "convert", str(jsonl), str(tmp_path / name)]) == 0
    capsys.readouterr()
    reports = []
    for name in ("train.jsonl", "train.csv", "train.json"):
        assert main(["data", "check", str(tmp_path / name), "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        reports.append((report["examples"], report["tokens"], report["billing_tokens"]))
    assert reports[0] == reports[1] == reports[2]
