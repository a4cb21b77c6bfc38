"""The seed-compatible modes through the CLI, against a real `tunelab serve` app (job worker
off, so jobs stay queued): --validate-only, --dry-run, --upload-only, --no-wait, the cost
gate, and `tunelab jobs list/events/cancel/watch` for a cloud job."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from faultproxy import dialogues, serve_in_thread
from tunelab.cli import main
from tunelab.server import ServeSettings, create_app

KEY = "sk-canary-cli-4242424242"
MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"



@pytest.fixture
def url(tunelab_home: Path, monkeypatch: pytest.MonkeyPatch):
    with serve_in_thread(create_app(ServeSettings(api_key=KEY, run_worker=False))) as port:
        yield f"http://127.0.0.1:{port}/v1"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    assert KEY not in captured.out + captured.err
    return code, json.loads(captured.out) if captured.out.strip() else {}, captured.err


def test_validate_only_needs_no_key_and_bad_data_names_the_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train = dialogues(tmp_path / "train.jsonl")
    code, result, err = run(capsys, "train", str(train), "--provider", "openai",
                            "--validate-only", "--json")
    assert code == 0 and result["ok"] and result["examples"] == 12
    assert "Validation passed: 12 training examples" in err
    train.write_text(train.read_text() + '{"messages": []}\n')
    code, _, err = run(capsys, "train", str(train), "--provider", "openai", "--validate-only")
    assert code == 1 and ":13:" in err


def test_missing_key_and_kimi_fail_with_one_line(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    train = dialogues(tmp_path / "train.jsonl")
    code, _, err = run(capsys, "train", str(train), "--provider", "openai", "--yes")
    assert code == 2 and "OPENAI_API_KEY" in err and "Traceback" not in err
    code, _, err = run(capsys, "train", str(train), "--provider", "kimi")
    assert code == 2 and "no fine-tuning API" in err and "--provider vertex" in err


def test_cost_gate_refuses_without_yes_when_not_interactive(
        url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    train = dialogues(tmp_path / "train.jsonl")
    code, _, err = run(capsys, "train", str(train), "--provider", "openai", "--base-url", url)
    assert code == 2 and "--yes" in err and "--max-cost" in err
    # a known price under --max-cost goes ahead without asking
    code, _, _ = run(capsys, "train", str(train), "--provider", "openai", "--base-url", url,
                     "--max-cost", "100", "--upload-only")
    assert code == 0


def test_dry_run_shows_the_request_and_sends_nothing(
        url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    train = dialogues(tmp_path / "train.jsonl")
    code, result, _ = run(capsys, "train", str(train), "--provider", "openai", "--base-url",
                          url, "--epochs", "3", "--learning-rate", "0.1", "--suffix",
                          "natasha-v1", "--dry-run", "--json")
    assert code == 0
    body = result["request"]["body"]
    assert body["method"] == {"type": "supervised", "supervised": {"hyperparameters": {
        "n_epochs": 3, "learning_rate_multiplier": 0.1}}}
    assert body["suffix"] == "natasha-v1" and result["cost"]["epochs"] == 3
    code, listed, _ = run(capsys, "jobs", "list", "--provider", "openai", "--base-url", url,
                          "--json")
    assert listed == {"jobs": []}


def test_upload_only_no_wait_then_jobs_commands(url: str, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    train = dialogues(tmp_path / "train.jsonl")
    flags = ["--provider", "openai", "--base-url", url, "--model", MODEL, "--yes", "--json"]
    code, first, _ = run(capsys, "train", str(train), *flags, "--upload-only")
    assert code == 0 and not first["files"]["training_file"]["reused"]
    code, job, err = run(capsys, "train", str(train), *flags, "--suffix", "cli", "--no-wait")
    assert code == 0 and job["status"] == "queued" and "already uploaded" in err
    assert job["training_file"] == first["files"]["training_file"]["id"]
    assert f"tunelab jobs watch {job['id']}" in err

    code, listed, _ = run(capsys, "jobs", "list", "--provider", "openai", "--base-url", url,
                          "--json")
    assert [(row["id"], row["source"]) for row in listed["jobs"]] == [(job["id"], "both")]
    code, events, _ = run(capsys, "jobs", "events", job["id"], "--json")
    assert any("Created fine-tuning job" in event["message"] for event in events["events"])
    code, cancelled, _ = run(capsys, "jobs", "cancel", job["id"], "--json")
    assert code == 0 and cancelled["status"] == "cancelled"
    # The served app shares this test's home, so the registry holds the job as the
    # server's own (local) row; --provider follows it through the OpenAI API instead.
    code, final, err = run(capsys, "jobs", "watch", job["id"], "--provider", "openai",
                           "--base-url", url, "--json")
    assert code == 1 and final["status"] == "cancelled" and "ended cancelled" in err
