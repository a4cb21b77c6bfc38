"""`tunelab migrate` over real HTTP: the real openai SDK against a stand-in OpenAI account
(tests/openai_double.py), with faults injected by tests/faultproxy.py, driven through the CLI
in-process. The clock is set (TUNELAB_TODAY) so days left are stable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from faultproxy import FaultPlan, FaultProxy, serve_in_thread
from openai_double import COACH, NATASHA, ORPHAN, Account, create_app, natasha_account
from test_inference import one_torch_thread  # noqa: F401 (an autouse fixture, shared)
from tunelab.cli import main
from tunelab.evaluate import golden
from tunelab.registry import open_registry

KEY = "sk-canary-migrate-0123456789abcdef"
TODAY = "2026-12-02"


@pytest.fixture
def account() -> Account:
    return natasha_account()


@pytest.fixture
def upstream(account: Account, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("TUNELAB_TODAY", TODAY)
    with serve_in_thread(create_app(account)) as port:
        yield port


@pytest.fixture
def url(upstream: int) -> str:
    return f"http://127.0.0.1:{upstream}/v1"


def tunelab(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def as_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    code, out, err = tunelab(capsys, *args, "--json")
    assert code == 0, err
    return json.loads(out)


def inventory(capsys: pytest.CaptureFixture[str], url: str) -> dict:
    return as_json(capsys, "migrate", "inventory", "--base-url", url)


# inventory ---------------------------------------------------------------------------------
def test_inventory_lists_every_model_and_imports_each_job_once(
        capsys: pytest.CaptureFixture[str], url: str) -> None:
    first = inventory(capsys, url)
    by_model = {entry["fine_tuned_model"]: entry for entry in first["models"]}
    natasha = by_model[NATASHA]
    assert natasha["job_id"] == "ftjob-natasha" and natasha["suffix"] == "natasha"
    assert natasha["base_model"] == "gpt-4o-mini-2024-07-18"
    assert natasha["hyperparameters"] == {"n_epochs": 3, "batch_size": 1,
                                          "learning_rate_multiplier": 1.8}
    assert (natasha["training_file"], natasha["validation_file"]) == (
        "file-natasha-train", "file-natasha-valid")
    assert [c["step"] for c in natasha["checkpoints"]] == [3, 6]
    assert (natasha["shutdown"], natasha["days_left"]) == ("2027-01-14", 43)
    assert (by_model[COACH]["shutdown"], by_model[COACH]["days_left"]) == ("2026-10-23", -40)
    assert by_model[ORPHAN]["job_id"] is None  # listed, though no job of it is visible
    assert by_model[None]["job_id"] == "ftjob-failed"  # pages followed: all three jobs
    assert sorted(e["imported"] for e in first["models"] if e["job_id"]) == ["new"] * 3

    again = inventory(capsys, url)
    assert sorted(e["imported"] for e in again["models"] if e["job_id"]) == ["updated"] * 3
    with open_registry() as registry:
        assert sorted(job.id for job in registry.list_jobs()) == [
            "ftjob-coach", "ftjob-failed", "ftjob-natasha"]
        assert len(registry.list_checkpoints("ftjob-natasha")) == 2
        assert [e.message for e in registry.list_events("ftjob-natasha")].count(
            "imported from openai by `tunelab migrate inventory`") == 1
    listed = as_json(capsys, "jobs", "list")
    assert sorted(row["id"] for row in listed["jobs"]) == [
        "ftjob-coach", "ftjob-failed", "ftjob-natasha"]


# pull --------------------------------------------------------------------------------------
def test_pull_interrupted_then_resumed_fetches_each_file_once(
        capsys: pytest.CaptureFixture[str], account: Account, upstream: int, url: str,
        tunelab_home: Path) -> None:
    inventory(capsys, url)
    # The validation file cannot be fetched: every try is refused, then the connection resets.
    plan = FaultPlan(script={"GET /v1/files/file-natasha-valid/content":
                             ["429"] * 3 + ["reset"] * 3})
    with FaultProxy(upstream, plan) as proxy:
        with open_registry() as registry:  # the job now points at the faulty way in
            registry.update_job("ftjob-natasha", endpoint=f"http://127.0.0.1:{proxy.port}/v1")
        code, _, err = tunelab(capsys, "migrate", "pull", NATASHA)
    assert code == 1 and "migrate pull" in err and KEY not in err
    assert account.calls["download file-natasha-train"] == 1
    # What was whole is kept; what broke off is a .part file, never a blob.
    blobs = tunelab_home / "blobs"
    assert [path.read_bytes() for path in (blobs / "sha256").iterdir()] == [
        account.files["file-natasha-train"][1]]
    (blobs / "partial" / "file-natasha-valid.part").write_bytes(b"half a fi")

    with open_registry() as registry:
        registry.update_job("ftjob-natasha", endpoint=url)
    report = as_json(capsys, "migrate", "pull", NATASHA)
    fetched = {item["role"]: item["fetched"] for item in report["files"]}
    assert fetched == {"training_file": False, "validation_file": True, "result_file": True}
    assert all(account.calls[f"download {fid}"] == 1 for fid in (
        "file-natasha-train", "file-natasha-valid", "file-natasha-result"))
    for item in report["files"]:
        path = Path(item["blob"]["path"])
        assert path.name.startswith(item["blob"]["sha256"]) and path.parent.name == "sha256"
        assert path.read_bytes() == account.files[item["file_id"]][1]
    checks = {item["role"]: item["check"] for item in report["files"]}
    assert checks["training_file"]["ok"] and checks["validation_file"]["examples"] == 4
    assert report["metric_steps"] == 9

    again = as_json(capsys, "migrate", "pull", NATASHA)  # idempotent: nothing fetched
    assert not any(item["fetched"] for item in again["files"])
    assert sum(v for k, v in account.calls.items() if k.startswith("download")) == 3
    with open_registry() as registry:
        rows = registry.list_metrics("ftjob-natasha")
        job = registry.get_job("ftjob-natasha")
    assert [row["step"] for row in rows] == list(range(1, 10))
    assert rows[2]["valid_loss"] == pytest.approx(1.7) and "valid_loss" not in rows[0]
    assert rows[0]["train_mean_token_accuracy"] == pytest.approx(0.33)
    assert job.metrics["steps"] == 9 and job.metrics["trained_tokens"] == 12345
    shown = as_json(capsys, "jobs", "compare", "ftjob-natasha", "ftjob-natasha")
    assert shown["a"] == "ftjob-natasha"


def test_pull_without_validation_file_holds_out_a_fixed_slice(
        capsys: pytest.CaptureFixture[str], url: str) -> None:
    inventory(capsys, url)
    first = as_json(capsys, "migrate", "pull", "ftjob-coach")
    held = first["held_out"]
    assert (held["examples"], held["val"], held["train"]) == (20, 2, 18)
    val = Path(held["val_file"]).read_text()
    assert as_json(capsys, "migrate", "pull", COACH)["held_out"]["val_file"] == held["val_file"]
    assert Path(held["val_file"]).read_text() == val


# record ------------------------------------------------------------------------------------
def test_record_interrupted_then_resumed_pays_for_no_answer_twice(
        capsys: pytest.CaptureFixture[str], account: Account, upstream: int, url: str) -> None:
    inventory(capsys, url)
    as_json(capsys, "migrate", "pull", NATASHA)
    # Three answers arrive, then the provider refuses until the run gives up.
    plan = FaultPlan(script={"POST /v1/chat/completions": ["ok"] * 3 + ["429"] * 20})
    with FaultProxy(upstream, plan) as proxy:
        with open_registry() as registry:
            registry.update_job("ftjob-natasha", endpoint=f"http://127.0.0.1:{proxy.port}/v1")
        code, _, err = tunelab(capsys, "migrate", "record", NATASHA, "--samples", "1", "--yes")
    assert code == 1 and "migrate record" in err
    assert account.calls[f"chat {NATASHA}"] == 3
    assert len(golden.read_log(NATASHA)) == 3

    with open_registry() as registry:
        registry.update_job("ftjob-natasha", endpoint=url)
    result = as_json(capsys, "migrate", "record", NATASHA, "--samples", "1", "--yes")
    assert (result["prompts"], result["answers"], result["asked"]) == (4, 8, 5)
    assert account.calls[f"chat {NATASHA}"] == 8  # 4 greedy + 4 samples, each paid once
    lines = [json.loads(line) for line in Path(result["golden"]).read_text().splitlines()]
    assert len(lines) == 4 and set(lines[0]) == {"messages"}
    assert lines[0]["messages"][-1]["content"].startswith("Darling, stop waiting.")
    assert "take" not in lines[0]["messages"][-1]["content"]  # the greedy answer
    samples = Path(result["samples"]).read_text().splitlines()
    assert len(samples) == 4 and "(take 1)" in samples[0]
    assert result["settings"]["model"] == NATASHA and result["settings"]["samples"] == 1

    done = as_json(capsys, "migrate", "record", NATASHA, "--samples", "1", "--yes")
    assert done["asked"] == 0 and account.calls[f"chat {NATASHA}"] == 8


def test_record_asks_before_paying_and_refuses_changed_settings(
        capsys: pytest.CaptureFixture[str], account: Account, url: str,
        tmp_path: Path) -> None:
    inventory(capsys, url)
    as_json(capsys, "migrate", "pull", NATASHA)
    code, _, err = tunelab(capsys, "migrate", "record", NATASHA)  # not a terminal, no --yes
    assert code == 2 and "--yes" in err and "$" in err
    assert account.calls[f"chat {NATASHA}"] == 0
    extra = tmp_path / "extra.txt"
    extra.write_text("How do I start project number 50?\nWhat should I do today?\n")
    result = as_json(capsys, "migrate", "record", NATASHA, "--prompts", str(extra), "--yes")
    assert result["prompts"] == 6  # 4 held-out prompts + 2 from the file
    code, _, err = tunelab(capsys, "migrate", "record", NATASHA, "--max-tokens", "64",
                           "--yes")
    assert code == 2 and "--max-tokens 512" in err


def test_faults_during_pull_and_record_lose_nothing_and_duplicate_nothing(
        capsys: pytest.CaptureFixture[str], account: Account, upstream: int) -> None:
    plan = FaultPlan(rate_429=0.2, rate_500=0.1, rate_reset=0.15, seed=11)
    with FaultProxy(upstream, plan) as proxy:
        proxied = f"http://127.0.0.1:{proxy.port}/v1"
        inventory(capsys, proxied)
        as_json(capsys, "migrate", "pull", NATASHA)
        result = as_json(capsys, "migrate", "record", NATASHA, "--samples", "2", "--yes")
    assert plan.log["429"] and plan.log["500"] and plan.log["reset"]  # faults did happen
    assert result["answers"] == 12 and account.calls[f"chat {NATASHA}"] == 12
    assert all(account.calls[f"download {fid}"] == 1 for fid in (
        "file-natasha-train", "file-natasha-valid", "file-natasha-result"))
    log = golden.read_log(NATASHA)
    assert len({answer.slot for answer in log}) == len(log) == 12


# status, secrets ---------------------------------------------------------------------------
def test_status_walks_each_model_to_its_next_command(
        capsys: pytest.CaptureFixture[str], url: str, tunelab_home: Path) -> None:
    code, out, _ = tunelab(capsys, "migrate", "status")
    assert code == 0 and "tunelab migrate inventory" in out
    inventory(capsys, url)
    rows = {row["job_id"]: row for row in as_json(capsys, "migrate", "status")["models"]}
    assert [row["job_id"] for row in as_json(capsys, "migrate", "status")["models"]][0] == \
        "ftjob-coach"  # shut down first: shown first
    assert rows["ftjob-natasha"]["step"] == "inventoried"
    assert rows["ftjob-natasha"]["next"] == "tunelab migrate pull ftjob-natasha"
    assert rows["ftjob-natasha"]["days_left"] == 43
    as_json(capsys, "migrate", "pull", NATASHA)
    as_json(capsys, "migrate", "record", NATASHA, "--yes")
    rows = {row["job_id"]: row for row in as_json(capsys, "migrate", "status")["models"]}
    assert rows["ftjob-natasha"]["step"] == "recorded"
    assert rows["ftjob-natasha"]["next"] == f"tunelab migrate retrain {NATASHA} --to local"
    code, out, _ = tunelab(capsys, "migrate", "status")
    assert code == 0 and "recorded" in out and "43 days" in out

    for path in tunelab_home.rglob("*"):  # the key went nowhere near the home
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


# retrain and compare (one tiny real run on the embedded model) ------------------------------
@pytest.mark.slow
def test_retrain_here_then_compare_against_the_record(
        capsys: pytest.CaptureFixture[str], account: Account, url: str,
        tmp_path: Path) -> None:
    inventory(capsys, url)
    pulled = as_json(capsys, "migrate", "pull", NATASHA)
    as_json(capsys, "migrate", "record", NATASHA, "--yes")
    tiny = tmp_path / "tiny.json"  # no samples after training, no checkpoints
    tiny.write_text(json.dumps({"max_samples": 0, "save_every": None}))
    code, out, err = tunelab(capsys, "migrate", "retrain", NATASHA, "--to", "local",
                             "--config", str(tiny), "--max-steps", "2", "--max-length", "48",
                             "--lora-r", "4", "--json")
    assert code == 0, err
    new = json.loads(out)["id"]
    with open_registry() as registry:
        job = registry.get_job(new)
    assert job.status == "succeeded"
    assert job.metadata == {"retrain_of": "ftjob-natasha", "replaces": NATASHA}
    # OpenAI's n_epochs 3, batch_size 1 and multiplier 1.8 (x the default 5e-4) carried over
    assert (job.config.epochs, job.config.batch_size) == (3, 1)
    assert job.config.learning_rate == pytest.approx(9e-4)
    blobs = {item["role"]: item["blob"]["path"] for item in pulled["files"]}
    assert (job.training_file, job.validation_file) == (
        blobs["training_file"], blobs["validation_file"])

    report = tmp_path / "switch.html"
    compared = as_json(capsys, "compare", f"recorded:{NATASHA}", new, "--max-new-tokens", "8",
                       "--report", str(report))
    recorded, tuned = compared["models"]
    assert compared["eval_file"].endswith("golden.jsonl") and compared["examples"] == 4
    assert recorded["answers"][0]["text"].startswith("Darling")  # known, not asked again
    assert account.calls[f"chat {NATASHA}"] == 4
    assert recorded["metrics"]["cost_per_1k_requests"] > 0  # priced as gpt-4o-mini on openai
    assert tuned["metrics"]["valid_loss"] > 0 and tuned["metrics"]["cost_per_1k_requests"] == 0
    [verdict] = compared["switch"]
    assert verdict["candidate"] == new and verdict["switch"] is False
    assert 0 <= verdict["chrf"] < 50
    html = report.read_text()
    assert "Can we switch?" in html and "Not yet" in html
    code, shown, _ = tunelab(capsys, "compare", f"recorded:{NATASHA}", new,
                             "--max-new-tokens", "8")  # the terminal says it too (cached)
    assert code == 0 and f"replace {NATASHA}? not yet" in shown.replace("\n", " ")
    assert "(bar 50)" in shown
    rows = {row["job_id"]: row for row in as_json(capsys, "migrate", "status")["models"]}
    assert rows["ftjob-natasha"]["step"] == "compared"
    assert rows["ftjob-natasha"]["replacement"] == new


# the auto-test after a cloud job -----------------------------------------------------------
def test_watch_auto_test_asks_the_tuned_model_greedily_at_the_default_length(
        capsys: pytest.CaptureFixture[str], account: Account, url: str) -> None:
    """The seed's auto-test answers as `tunelab test` does (bench/README.md, "Generation
    defaults"): greedy, seed 0, local/generation.py's length; not sampled at T=0.7."""
    from tunelab.local.generation import DEFAULT

    report = as_json(capsys, "jobs", "watch", "ftjob-natasha", "--provider", "openai",
                     "--base-url", url, "--interval", "0.01")
    asked = [(body["model"], body["temperature"], body["max_tokens"], body["seed"])
             for body in account.chat_requests]
    assert len(report["samples"]) == len(asked) > 0
    assert asked == [(NATASHA, 0.0, DEFAULT.max_new_tokens, 0)] * len(asked)


@pytest.mark.slow
def test_a_retrain_killed_mid_run_is_still_linked_to_the_job_it_replaces(
        capsys: pytest.CaptureFixture[str], account: Account, url: str,
        tmp_path: Path) -> None:
    """The link used to be written after training returned: a kill -9 left an orphan run
    that `migrate status` and `serve` could not tie to the old model. Now the row carries
    it from its first moment."""
    import os
    import signal
    import subprocess
    import sys
    import time

    inventory(capsys, url)
    as_json(capsys, "migrate", "pull", NATASHA)
    tiny = tmp_path / "tiny.json"
    tiny.write_text(json.dumps({"max_samples": 0, "save_every": None}))
    child = subprocess.Popen(
        [sys.executable, "-m", "tunelab", "migrate", "retrain", NATASHA, "--to", "local",
         "--config", str(tiny), "--max-steps", "500", "--max-length", "48", "--lora-r", "4"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    try:
        deadline, made = time.time() + 120, []
        while not made and time.time() < deadline and child.poll() is None:
            time.sleep(0.2)
            with open_registry() as registry:
                made = registry.list_jobs(provider="local")
        assert made, "the retrain never registered its job"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert made[0].metadata == {"retrain_of": "ftjob-natasha", "replaces": NATASHA}
