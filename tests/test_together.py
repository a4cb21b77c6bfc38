"""Together AI through the real `together` SDK and tunelab's CLI, over real HTTP against the
stand-in (tests/together_double.py): upload, SFT and DPO jobs, watch, events, checkpoints,
chat, cancel, a failed job's reason, retries that create nothing twice, a key that never
shows; and weights that come home: train on the stand-in -> `tunelab pull` -> export GGUF ->
chat locally, on the session's tiny adapter served as Together packs it."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from faultproxy import FaultPlan, FaultProxy, dialogues, serve_in_thread
from together_double import KEY, Account, create_app
from tunelab.cli import main
from tunelab.local import model_source
from tunelab.registry import open_registry

MODEL = "Qwen/Qwen3-8B"


@pytest.fixture
def account() -> Account:
    return Account()


@pytest.fixture
def url(account: Account, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TOGETHER_API_KEY", KEY)
    with serve_in_thread(create_app(account)) as port:
        yield f"http://127.0.0.1:{port}"


def tunelab(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    assert KEY not in captured.out + captured.err and "Traceback" not in captured.err
    return code, captured.out, captured.err


def train(capsys: pytest.CaptureFixture[str], url: str, data: Path, *flags: str,
          wait: bool = False, code: int = 0) -> str:
    """`tunelab train --provider together`: the job id. Waiting follows the job to its end
    (`jobs watch`'s loop, polling at once: the stand-in moves a job on at each read)."""
    follow = ("--interval", "0.01") if wait else ("--no-wait",)
    done, out, err = tunelab(capsys, "train", str(data), "--provider", "together",
                             "--base-url", url, "--model", MODEL, "--yes", "--json", *follow,
                             *flags)
    assert done == code, err
    return json.loads(out.strip().splitlines()[-1])["id"]


def preference_rows(path: Path, count: int = 10) -> Path:
    """OpenAI's preference format, which Together takes as it is."""
    rows = [{"input": {"messages": [{"role": "user", "content": f"Plan {n}?"}]},
             "preferred_output": [{"role": "assistant", "content": f"One step on plan {n}."}],
             "non_preferred_output": [{"role": "assistant", "content": "I cannot help."}]}
            for n in range(count)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_an_sft_job_goes_from_upload_to_chat_through_the_cli(
        account: Account, url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = dialogues(tmp_path / "train.jsonl")
    job = train(capsys, url, data, "--epochs", "2", "--lora-r", "8", "--suffix", "natasha",
                wait=True)
    [body] = account.created
    assert (body["model"], body["n_epochs"], body["training_method"]["method"]) == \
        (MODEL, 2, "sft")
    assert body["training_type"]["type"] == "Lora" and body["training_type"]["lora_r"] == 8
    assert account.uploads[body["training_file"]] == data.read_bytes()  # sent as it is
    again = train(capsys, url, data)  # the same bytes: the upload is reused, not sent again
    assert account.calls["PUT /upload/file-0001"] == 1 and again != job

    code, out, _ = tunelab(capsys, "jobs", "watch", job, "--json")  # it has ended: one look
    assert code == 0 and json.loads(out.strip().splitlines()[-1])["status"] == "succeeded"
    code, out, _ = tunelab(capsys, "jobs", "events", job, "--json")
    messages = [event["message"] for event in json.loads(out)["events"]]
    assert {"Training started", "Fine-tuning job completed",
            "step 4: train_loss 0.8000"} <= set(messages)
    code, out, _ = tunelab(capsys, "jobs", "checkpoints", job, "--json")
    assert [row["step"] for row in json.loads(out)["checkpoints"]] == [4]
    with open_registry() as registry:
        record = registry.get_job(job)
        losses = {row["step"]: row["train_loss"] for row in registry.list_metrics(job)}
    assert (record.provider, record.status, record.native_status) == \
        ("together", "succeeded", "completed")
    assert losses == {1: 1.7, 2: 1.4, 3: 1.1, 4: 0.8}  # GET .../metrics, each step once
    code, out, _ = tunelab(capsys, "chat", record.fine_tuned_model, "--provider", "together",
                           "--base-url", url, "-m", "How do I start?")
    assert code == 0 and f"[{record.fine_tuned_model}] You asked: How do I start?" in out
    code, out, _ = tunelab(capsys, "test", record.fine_tuned_model, "--provider", "together",
                           "--base-url", url, "--json")
    assert code == 0 and "You asked" in out
    code, out, _ = tunelab(capsys, "compare", record.fine_tuned_model, MODEL, "--provider",
                           "together", "--base-url", url, "--eval",
                           str(dialogues(tmp_path / "held_out.jsonl", 3)), "--json")
    assert code == 0 and {row["label"] for row in json.loads(out)["models"]} == \
        {record.fine_tuned_model, MODEL}
    code, out, _ = tunelab(capsys, "jobs", "list", "--provider", "together", "--base-url",
                           url, "--json")
    assert {row["id"] for row in json.loads(out)["jobs"]} >= {job, again}


def test_a_dpo_job_sends_the_preference_file_as_it_is_with_its_beta(
        account: Account, url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prefs = preference_rows(tmp_path / "prefs.jsonl")
    train(capsys, url, prefs, "--method", "dpo", "--beta", "0.2")
    [body] = account.created
    assert body["training_method"] == {"method": "dpo", "dpo_beta": 0.2,
                                       "dpo_normalize_logratios_by_length": False,
                                       "dpo_reference_free": False}
    assert account.uploads[body["training_file"]] == prefs.read_bytes()


def test_a_failed_job_says_why_and_a_cancelled_one_stops(
        account: Account, url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = dialogues(tmp_path / "train.jsonl")
    failing = train(capsys, url, data, "--suffix", "fail", wait=True, code=1)
    code, out, _ = tunelab(capsys, "jobs", "show", failing, "--json")
    shown = json.loads(out)
    assert shown["status"] == "failed" and "loss became NaN" in shown["error"]["message"]
    account.user_limit = 0.0  # Together's own estimate says the account cannot pay
    code, _, err = tunelab(capsys, "train", str(data), "--provider", "together", "--base-url",
                           url, "--model", MODEL, "--yes", "--no-wait", "--epochs", "4")
    assert code == 1 and "over the account's credit limit" in err and "nothing was created" in err
    assert len(account.created) == 1  # only the failing job's
    account.user_limit = 100.0
    cancelled = train(capsys, url, data, "--epochs", "3")
    code, out, _ = tunelab(capsys, "jobs", "cancel", cancelled, "--json")
    assert code == 0 and json.loads(out)["status"] == "cancelled"


def test_429s_500s_and_a_lost_answer_create_nothing_twice(
        account: Account, url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port = int(url.rsplit(":", 1)[1])
    plan = FaultPlan(script={"POST /v1/files": ["500"],
                             "GET /v1/fine-tunes/models/limits": ["429"],
                             "POST /v1/fine-tunes/estimate-price": ["500"],
                             "POST /v1/fine-tunes": ["drop_answer"]})
    with FaultProxy(port, plan) as proxy:
        job = train(capsys, f"http://127.0.0.1:{proxy.port}", dialogues(tmp_path / "t.jsonl"))
    assert len(account.files) == 1 and len(account.created) == 1  # each made once
    assert list(account.jobs) == [job]  # the job the lost answer made, adopted
    assert plan.log["drop_answer"] == 1 and plan.log["500"] == 2 and plan.log["429"] == 1


def test_the_key_never_shows_in_output_logs_or_the_registry(
        account: Account, url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch, tunelab_home: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    data = dialogues(tmp_path / "train.jsonl")
    job = train(capsys, url, data, wait=True)
    wrong = "tgp_v1_wrong-key-that-the-server-echoes-back"
    monkeypatch.setenv("TOGETHER_API_KEY", wrong)
    code, out, err = tunelab(capsys, "jobs", "show", job, "--provider", "together",
                             "--base-url", url)
    assert code != 0 or "succeeded" in out
    code, out, err = tunelab(capsys, "train", str(data), "--provider", "together",
                             "--base-url", url, "--model", MODEL, "--yes", "--epochs", "5")
    assert code == 2 and "together refused the key" in err and wrong not in out + err, err
    stored = b"".join(path.read_bytes() for path in tunelab_home.rglob("*") if path.is_file())
    assert KEY.encode() not in stored and wrong.encode() not in stored
    assert KEY not in caplog.text and wrong not in caplog.text
    with sqlite3.connect(tunelab_home / "registry.sqlite") as db:
        assert not db.execute("SELECT 1 FROM jobs WHERE config_json LIKE ?",
                              (f"%{KEY[-12:]}%",)).fetchall()


# weights come home --------------------------------------------------------------------------
@pytest.fixture
def served_adapter(tiny_run: Any, tmp_path: Path) -> Path:
    """The session's tiny adapter as Together would hand it back: its config naming the base
    by its hub id, not by a path on the machine that trained it."""
    folder = tmp_path / "together-adapter"
    shutil.copytree(Path(tiny_run.result["run_dir"]) / "adapter", folder)
    config = json.loads((folder / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = model_source.DEFAULT_MODEL
    (folder / "adapter_config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.slow
def test_a_together_adapter_comes_home_exports_to_gguf_and_answers_offline(
        account: Account, url: str, served_adapter: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    account.weights["adapter"] = served_adapter
    job = train(capsys, url, dialogues(tmp_path / "train.jsonl"), wait=True)
    code, out, err = tunelab(capsys, "pull", job, "--name", "natasha-home", "--json")
    assert code == 0, err
    pulled = json.loads(out)
    assert (pulled["kind"], pulled["name"], pulled["source_job"]) == \
        ("adapter", "natasha-home", job)
    weights = Path(pulled["path"])
    assert (weights / "adapter_model.safetensors").read_bytes() == \
        (served_adapter / "adapter_model.safetensors").read_bytes()
    with open_registry() as registry:
        local = registry.get_job(pulled["job_id"])
        source_events = [event.message for event in registry.list_events(job)]
    assert (local.provider, local.status, local.metadata["pulled_from"]) == \
        ("local", "succeeded", f"together:{job}")
    assert any("pulled home as natasha-home" in message for message in source_events)

    code, out, err = tunelab(capsys, "export", "natasha-home", "--format", "gguf", "-o",
                             str(tmp_path / "gguf"), "--json")
    assert code == 0, err
    assert any(item["path"].endswith(".gguf") for item in json.loads(out)["files"])
    asked_there = account.calls["POST /v1/chat/completions"]  # the job's own auto-test
    code, out, err = tunelab(capsys, "chat", "natasha-home", "-m", "Я потерялась.",
                             "--max-new-tokens", "2", "--json")
    assert code == 0, err
    answer = json.loads(out)
    assert answer["model"]["provider"] == "local" and answer["text"].strip()
    assert account.calls["POST /v1/chat/completions"] == asked_there  # answered here


@pytest.mark.slow
def test_an_adapter_that_does_not_fit_its_base_is_refused_and_leaves_nothing(
        account: Account, url: str, served_adapter: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], tunelab_home: Path) -> None:
    config = json.loads((served_adapter / "adapter_config.json").read_text())
    config["r"] *= 2  # the tensors stay rank r: they cannot load at twice the rank
    (served_adapter / "adapter_config.json").write_text(json.dumps(config))
    account.weights["adapter"] = served_adapter
    job = train(capsys, url, dialogues(tmp_path / "train.jsonl"), wait=True)
    code, _, err = tunelab(capsys, "pull", job)
    assert code == 2 and "does not fit" in err and len(err.strip().splitlines()) == 1
    with open_registry() as registry:
        assert [row.provider for row in registry.list_jobs()] == ["together"]
    assert [path.name for path in (tunelab_home / "runs").iterdir()] == []
    code, _, err = tunelab(capsys, "pull", job, "--base-model", str(tmp_path / "nowhere"))
    assert code == 2 and "not on this machine" in err


def test_a_provider_that_keeps_its_weights_is_refused_by_name(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from tunelab.registry import JobRecord

    monkeypatch.setenv("OPENAI_API_KEY", "sk-canary-pull-0123456789")
    with open_registry() as registry:
        registry.create_job(JobRecord(id="ftjob-kept", provider="openai", status="succeeded",
                                      created_at=time.time(), updated_at=time.time(),
                                      endpoint="http://127.0.0.1:9/v1", base_model="gpt-4.1"))
    code, _, err = tunelab(capsys, "pull", "ftjob-kept")
    assert code == 2 and "openai does not let you download" in err
