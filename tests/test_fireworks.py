"""Fireworks AI through the real `fireworks-ai` SDK against tests/fireworks_double.py, over
real HTTP: the CLI's train/watch/events/jobs show/chat for SFT and DPO, LoRA only, a failed
job's error, cancel, exactly-once datasets and jobs under 429/500 and lost answers, the key
kept out of everything, and the adapter brought home with `tunelab pull`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from azure_double import preference_rows
from faultproxy import FaultPlan, FaultProxy, dialogues, serve_in_thread
from fireworks_double import ACCOUNT, Account, create_app
from tunelab.cli import main
from tunelab.providers import get_provider
from tunelab.providers.base import JobSpec, ProviderSettings
from tunelab.providers.retry import RetryPolicy

KEY = "fw-canary-key-3c3c3c3c3c3c3c3c"
BASE = "accounts/fireworks/models/qwen3-8b"


@pytest.fixture
def account(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FIREWORKS_API_KEY", KEY)
    monkeypatch.setenv("FIREWORKS_ACCOUNT_ID", ACCOUNT)
    state = Account(key=KEY)
    with serve_in_thread(create_app(state)) as port:
        state.url = f"http://127.0.0.1:{port}"  # type: ignore[attr-defined]
        state.port = port  # type: ignore[attr-defined]
        yield state


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    assert KEY not in captured.out + captured.err
    return code, captured.out, captured.err


def train_args(account: Account, path: Path, *extra: str) -> list[str]:
    return ["train", str(path), "--provider", "fireworks", "--base-url",
            account.url, "--model", BASE, "--yes", "--interval", "0.01",  # type: ignore[attr-defined]
            *extra]


def test_an_sft_job_trains_to_success_and_answers(
        account: Account, tmp_path: Path, tunelab_home: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    train = dialogues(tmp_path / "natasha.jsonl")
    code, out, err = run(capsys, *train_args(account, train, "--epochs", "2",
                                             "--learning-rate", "0.0001", "--lora-r", "16",
                                             "--batch-size", "4", "--suffix", "natasha",
                                             "--json"))
    assert code == 0, err
    body = account.bodies[0]
    assert body["collection"] == "supervisedFineTuningJobs"
    assert (body["baseModel"], body["epochs"], body["learningRate"], body["loraRank"],
            body["batchSizeSamples"], body["displayName"]) == (BASE, 2, 0.0001, 16, 4,
                                                               "natasha")
    assert body["dataset"].startswith(f"accounts/{ACCOUNT}/datasets/tl-")
    assert next(iter(account.contents.values())) == train.read_bytes()  # sent as it is
    job = json.loads(out)
    assert job["status"] == "succeeded" and job["id"].startswith("tl-sft-")
    model = job["fine_tuned_model"]
    assert model == f"accounts/{ACCOUNT}/models/{job['id']}"
    code, out, _ = run(capsys, "jobs", "events", job["id"], "--json")
    messages = [event["message"] for event in json.loads(out)["events"]]
    assert any("LoRA addon" in message for message in messages)
    code, out, _ = run(capsys, "jobs", "show", model, "--json")
    assert code == 0 and json.loads(out)["id"] == job["id"]
    code, out, _ = run(capsys, "chat", model, "--message", "Hi", "--json")
    assert code == 0 and "small step" in out
    code, out, _ = run(capsys, "checkpoints", job["id"], "--json")
    assert code == 0 and model in out
    for path in tunelab_home.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
    # the same data again: the dataset is found READY, nothing uploaded twice
    code, _, err = run(capsys, *train_args(account, train, "--no-wait"))
    assert code == 0 and "already uploaded" in err
    assert account.created == {"datasets": 1, "uploads": 1, "jobs": 2}


def test_a_dpo_job_sends_the_dpo_loss_and_beta(
        account: Account, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(preference_rows(12), encoding="utf-8")
    code, out, err = run(capsys, *train_args(account, pairs, "--method", "dpo", "--beta",
                                             "0.2", "--epochs", "1", "--json"))
    assert code == 0, err
    body = account.bodies[0]
    assert body["collection"] == "dpoJobs"
    assert body["lossConfig"] == {"method": "DPO", "dpo": {"beta": 0.2}}
    assert body["trainingConfig"] == {"baseModel": BASE, "epochs": 1}
    job = json.loads(out)
    assert job["id"].startswith("tl-dpo-") and job["status"] == "succeeded"
    assert job["fine_tuned_model"] == f"accounts/{ACCOUNT}/models/{job['id']}"


def test_lora_only_and_a_failed_jobs_error_and_cancel(
        account: Account, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train = dialogues(tmp_path / "natasha.jsonl")
    for dry in (["--dry-run"], []):
        code, _, err = run(capsys, *train_args(account, train, "--full", *dry))
        assert code == 2 and "fireworks fine-tunes with LoRA only" in err and "--full" in err
    assert account.created == {}  # refused before anything was uploaded
    bad = dialogues(tmp_path / "bad.jsonl")
    bad.write_text(bad.read_text().replace("small step on project 3", "FAIL"))
    code, _, err = run(capsys, *train_args(account, bad))
    assert code == 1 and "INVALID_ARGUMENT" in err and "dataset line 4" in err
    code, out, _ = run(capsys, *train_args(account, train, "--no-wait", "--json"))
    job_id = json.loads(out)["id"]
    code, out, _ = run(capsys, "jobs", "cancel", job_id, "--json")
    assert code == 0 and json.loads(out)["status"] == "cancelled"


def test_datasets_and_jobs_are_made_once_through_faults(
        account: Account, tmp_path: Path) -> None:
    root = f"/v1/accounts/{ACCOUNT}"
    plan = FaultPlan(script={f"POST {root}/datasets": ["429", "drop_answer"],
                             f"POST {root}/supervisedFineTuningJobs": ["500", "drop_answer"]})
    train = dialogues(tmp_path / "train.jsonl")
    with FaultProxy(account.port, plan) as proxy:  # type: ignore[attr-defined]
        provider = get_provider("fireworks", ProviderSettings(
            base_url=f"http://127.0.0.1:{proxy.port}", retry=RetryPolicy(timeout=30)))
        provider._sleep = lambda _seconds: None  # type: ignore[attr-defined]
        ref = provider.upload(train)
        job = provider.create_job(JobSpec(base_model=BASE, training_file=ref.id))
        assert provider.get_job(job.id).id == job.id  # the job its lost answer made
    assert account.created == {"datasets": 1, "uploads": 1, "jobs": 1}
    assert plan.log["drop_answer"] == 2 and plan.log["429"] == 1 and plan.log["500"] == 1


@pytest.mark.slow
def test_the_adapter_comes_home_with_tunelab_pull(
        account: Account, tmp_path: Path, random_lora: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    account.adapter = random_lora  # real PEFT weights on the embedded model
    train = dialogues(tmp_path / "natasha.jsonl")
    code, out, _ = run(capsys, *train_args(account, train, "--json"))
    job_id = json.loads(out)["id"]
    code, out, err = run(capsys, "pull", job_id, "--name", "natasha-fw", "--json")
    assert code == 0, err
    assert set(account.downloads) == {path.name for path in random_lora.iterdir()}
    code, _, err = run(capsys, "pull", job_id, "--kind", "merged")
    assert code == 2 and "adapter" in err
