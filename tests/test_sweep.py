"""`tunelab sweep` and early stopping, on the embedded SmolLM2-135M with tiny settings.

One grid sweep (learning rate 2e-3 or 1.0, LoRA rank 2 or 4) is shared by the grid, pruning,
winner and base-weights tests; a killed sweep is resumed; a cloud sweep runs against
tunelab's own OpenAI-compatible server with its worker off, so nothing trains there.
Kept small for a loaded 2-core CPU: 6 short examples, max_length 40, 1-4 steps per trial,
an adapter on q_proj/v_proj only (small checkpoints), no sample answers.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from tunelab.cli import main
from tunelab.config import TrainConfig
from tunelab.errors import UsageError
from tunelab.local import checkpoints
from tunelab.local.warm import WarmStart
from tunelab.registry import open_registry
from tunelab.sweep import plan as plans
from tunelab.sweep.board import Board
from tunelab.sweep.runner import SweepRequest, execute, open_sweep
from tunelab.sweep.schedule import TpeSchedule
from tunelab.sweep.space import Choices, Range, grid, parse_flags

NAMES = ["Anna", "Boris", "Clara", "Dmitri", "Elena", "Fyodor"]
TINY = {"max_length": 40, "batch_size": 2, "precision": "fp32", "save_every": 100,
        "eval_every": 1, "max_samples": 0, "target_modules": ["q_proj", "v_proj"]}
TINY_FLAGS = ["--max-length", "40", "--batch-size", "2", "--precision", "fp32",
              "--eval-every", "1"]


def example(name: str) -> dict:
    return {"messages": [{"role": "system", "content": "Be Natasha."},
                         {"role": "user", "content": f"Hi, I am {name}."},
                         {"role": "assistant", "content": f"Hello {name}! I am Natasha."}]}


def write_data(folder: Path) -> tuple[Path, Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    train, val, config = folder / "train.jsonl", folder / "val.jsonl", folder / "tiny.json"
    train.write_text("".join(json.dumps(example(name)) + "\n" for name in NAMES))
    val.write_text("".join(json.dumps(example(name)) + "\n" for name in ("Vera", "Yuri")))
    config.write_text(json.dumps({"max_samples": 0, "target_modules": ["q_proj", "v_proj"],
                                  "save_every": 100}))
    return train, val, config


def json_out(argv: list[str]) -> tuple[int, dict]:
    """Run the CLI in-process; its exit code and the one JSON object it printed."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(argv)
    lines = buffer.getvalue().strip().splitlines()
    return code, json.loads(lines[-1]) if lines else {}


def state_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


@pytest.fixture(scope="module")
def grid_sweep(tmp_path_factory: pytest.TempPathFactory, shared_cache: Path) -> dict:
    """A 2x2 grid, run once through the library on a base the test holds, so that the base
    weights can be compared before and after."""
    folder = tmp_path_factory.mktemp("grid")
    train, val, _ = write_data(folder / "data")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TUNELAB_HOME", str(folder / "home"))
        patch.setenv("TUNELAB_CACHE_DIR", str(shared_cache))
        patch.setenv("HF_HUB_OFFLINE", "1")
        request = SweepRequest(file=train, validation_file=val,
                               fixed={**TINY, "max_steps": 2},
                               varied={"learning_rate": "2e-3,1.0", "lora_r": "2,4"})
        plan, resumed = open_sweep(request)
        warm = WarmStart.load(TrainConfig(**plan.base))
        before = state_of(warm.base)
        summary = execute(plan, Board(plan.id, plan.provider, plan.mode), threading.Event(),
                          warm=warm)
        after = state_of(warm.base)
        jobs = plans.trial_jobs(plan.id)
    return {"summary": summary, "plan": plan, "resumed": resumed, "before": before,
            "after": after, "warm": warm, "jobs": jobs,
            "train": train, "val": val, "folder": folder}


def test_grid_records_every_trial_and_picks_the_lowest_validation_loss(grid_sweep) -> None:
    summary, jobs = grid_sweep["summary"], grid_sweep["jobs"]
    assert not grid_sweep["resumed"] and summary["ended"] == "finished"
    assert sorted(jobs) == [0, 1, 2, 3]
    assert [jobs[i].hyperparameters for i in range(4)] == [
        {"learning_rate": 2e-3, "lora_r": 2}, {"learning_rate": 2e-3, "lora_r": 4},
        {"learning_rate": 1.0, "lora_r": 2}, {"learning_rate": 1.0, "lora_r": 4}]
    for index, job in jobs.items():
        assert job.metadata == {"sweep": summary["sweep"], "trial": str(index)}
        assert job.provider == "local" and job.config.max_steps == 2
    succeeded = {i: job for i, job in jobs.items() if job.status == "succeeded"}
    best = min(succeeded, key=lambda i: succeeded[i].metrics["best_valid_loss"])
    assert summary["winner"]["index"] == best
    assert summary["winner"]["job_id"] == jobs[best].id
    assert summary["base_valid_loss"] > summary["winner"]["best_valid_loss"]


def test_a_diverging_learning_rate_is_pruned(grid_sweep) -> None:
    jobs = grid_sweep["jobs"]
    for index in (2, 3):  # learning rate 1.0
        job = jobs[index]
        assert (job.status, job.native_status) == ("cancelled", "pruned")
        assert job.metrics["steps"] == 1  # stopped at its first validation, of 2 steps
        row = grid_sweep["summary"]["trials"][index]
        assert row["status"] == "pruned" and "above the untrained base model" in row["note"]
    assert {jobs[0].status, jobs[1].status} == {"succeeded"}


def test_the_base_model_is_lent_and_given_back_bit_identical(grid_sweep) -> None:
    before, after, warm = grid_sweep["before"], grid_sweep["after"], grid_sweep["warm"]
    assert before.keys() == after.keys()
    assert all(torch.equal(before[name], after[name]) for name in before)
    assert not hasattr(warm.base, "peft_config")
    assert not [module for module in warm.base.modules() if "forward" in module.__dict__]


def test_winner_config_trains_as_it_is_and_losers_keep_only_metrics(
        grid_sweep, tunelab_home: Path, shared_cache: Path) -> None:
    summary, jobs = grid_sweep["summary"], grid_sweep["jobs"]
    winner = Path(summary["winner_config"])
    assert winner.suffix == ".yaml" and Path(summary["curves"]).read_bytes()[:4] == b"\x89PNG"
    assert summary["train_command"] == f"tunelab train {grid_sweep['train']} --config {winner}"
    code, report = json_out(["train", str(grid_sweep["train"]), "--config", str(winner),
                             "--dry-run", "--json"])
    assert code == 0
    chosen = jobs[summary["winner"]["index"]].hyperparameters
    assert {key: report["config"][key] for key in chosen} == chosen
    for index, job in jobs.items():
        run_dir = Path(job.run_dir)
        assert (run_dir / "metrics.jsonl").is_file()
        is_winner = index == summary["winner"]["index"]
        assert (run_dir / "adapter").is_dir() == is_winner
        assert (run_dir / "checkpoints").is_dir() == is_winner
        assert (job.fine_tuned_model is not None) == is_winner


def test_jobs_compare_shows_two_trials(grid_sweep, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNELAB_HOME", str(grid_sweep["folder"] / "home"))
    jobs = grid_sweep["jobs"]
    code, report = json_out(["jobs", "compare", jobs[0].id, jobs[1].id, "--json"])
    assert code == 0 and report["config_diff"]["lora_r"] == [2, 4]


def test_jobs_list_shows_and_filters_a_sweeps_trials(
        grid_sweep, monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    from tunelab.cli.jobs_cmd import jobs_table
    from tunelab.registry.store import JobRecord

    monkeypatch.setenv("TUNELAB_HOME", str(grid_sweep["folder"] / "home"))
    sweep_id = grid_sweep["plan"].id
    with open_registry() as registry:  # a job of no sweep, which --sweep must leave out
        registry.create_job(JobRecord(id="ftjob-lonely", provider="local", status="succeeded",
                                      created_at=time.time(), updated_at=time.time()))
        everything = registry.list_jobs()
    code, listed = json_out(["jobs", "list", "--sweep", sweep_id, "--json"])
    assert code == 0
    assert sorted(job["metadata"]["trial"] for job in listed["jobs"]) == ["0", "1", "2", "3"]
    screen = Console(width=160, record=True)
    screen.print(jobs_table(everything, 160))
    table = screen.export_text()
    assert "ftjob-lonely" in table and f"{sweep_id} #3" in table


def test_budget_stops_starting_new_trials(grid_sweep) -> None:
    request = SweepRequest(file=grid_sweep["train"], validation_file=grid_sweep["val"],
                           fixed={**TINY, "max_steps": 1},
                           varied={"learning_rate": "1e-3,2e-3,3e-3"},
                           budget_minutes=0.001)  # spent once the first trial has run
    plan, _ = open_sweep(request)
    summary = execute(plan, Board(plan.id, plan.provider, plan.mode), threading.Event(),
                      warm=grid_sweep["warm"])  # the same files: its base and data fit
    assert summary["ended"] == "budget"
    assert [row["status"] for row in summary["trials"]] == ["succeeded", "not started",
                                                            "not started"]
    assert len(plans.trial_jobs(plan.id)) == 1 and summary["winner"]["index"] == 0


def test_early_stopping_keeps_the_best_checkpoint(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    train, val, config = write_data(tmp_path / "data")
    code, result = json_out(["train", str(train), "--validation-file", str(val), "--config",
                             str(config), *TINY_FLAGS, "--max-steps", "9",
                             "--learning-rate", "0.2",  # so high that validation loss rises
                             "--early-stopping-patience", "1", "--json"])
    assert code == 0 and result["status"] == "succeeded"
    run_dir = Path(result["run_dir"])
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    valid = {line["step"]: line["valid_loss"] for line in lines if "valid_loss" in line}
    best_step = min(valid, key=valid.get)
    last = max(valid)
    # Stopped at the first evaluation without a new best, long before step 9.
    assert last == best_step + 1 < 9 and result["metrics"]["steps"] == last
    assert result["metrics"]["best_valid_loss"] == valid[best_step] < valid[last]
    with open_registry() as registry:
        assert registry.get_job(result["id"]).native_status == "early_stopped"
    best = checkpoints.read_pointer(run_dir / "checkpoints", "best")
    assert json.loads((best / "state.json").read_text())["step"] == best_step
    kept = load_file(run_dir / "adapter" / "adapter_model.safetensors")
    at_best = load_file(best / "adapter" / "adapter_model.safetensors")
    assert kept.keys() == at_best.keys()
    assert all(torch.equal(kept[name], at_best[name]) for name in kept)  # the best weights


def test_a_killed_sweep_resumes_without_redoing_finished_trials(
        tmp_path: Path, tunelab_home: Path) -> None:
    train, val, config = write_data(tmp_path / "data")
    argv = ["sweep", str(train), "--validation-file", str(val), "--config", str(config),
            "--max-length", "40", "--batch-size", "2", "--precision", "fp32",
            "--max-steps", "2", "--save-every", "1",
            "--learning-rate", "1e-3..3e-3", "--trials", "2"]  # TPE, replayed on resume
    log = tmp_path / "sweep.log"
    with log.open("wb") as sink:
        process = subprocess.Popen([sys.executable, "-m", "tunelab", *argv], env=os.environ,
                                   stdout=subprocess.DEVNULL, stderr=sink)
    try:
        sweep_id, jobs = _wait_for_second_trial_checkpoint(process, tunelab_home, log)
    finally:
        process.send_signal(signal.SIGKILL)  # no chance to checkpoint or clean up
        process.wait()
    assert jobs[1].status == "running"
    with open_registry() as registry:
        first_events = len(registry.list_events(jobs[0].id))

    code, summary = json_out([*argv, "--json"])  # the same command again
    assert code == 0 and summary["sweep"] == sweep_id and summary["ended"] == "finished"
    after = plans.trial_jobs(sweep_id)
    assert [after[i].id for i in (0, 1)] == [jobs[0].id, jobs[1].id]
    assert after[1].hyperparameters == jobs[1].hyperparameters
    assert after[1].status == "succeeded" and after[1].metrics["steps"] == 2
    with open_registry() as registry:
        assert len(registry.list_events(jobs[0].id)) == first_events + (
            0 if summary["winner"]["index"] == 0 else 1)  # untouched, or "weights removed"
        messages = [event.message for event in registry.list_events(jobs[1].id)]
    assert any(message.startswith("training resumed from step-") for message in messages)
    assert sum(message.startswith("training started") for message in messages) == 1


def _wait_for_second_trial_checkpoint(process: subprocess.Popen, home: Path,
                                      log: Path) -> tuple[str, dict]:
    """Poll the registry until trial 0 succeeded and trial 1 has a checkpoint."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        assert process.poll() is None, "the sweep ended before it could be killed: " + \
            log.read_text(errors="replace")[-2000:]
        found = list((home / "sweeps").glob("sweep-*/plan.json"))
        if found:
            sweep_id = found[0].parent.name
            jobs = plans.trial_jobs(sweep_id)
            if 1 in jobs and jobs[0].status == "succeeded" and checkpoints.read_pointer(
                    Path(jobs[1].run_dir) / "checkpoints", "latest") is not None:
                return sweep_id, jobs
        time.sleep(0.1)
    raise AssertionError("the second trial never checkpointed")


KEY = "sweep-test-key-41c2"
MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_cloud_sweep_creates_exactly_n_jobs_and_not_again(
        tmp_path: Path, tunelab_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import openai

    from faultproxy import dialogues, serve_in_thread
    from tunelab.server import ServeSettings, create_app

    train = dialogues(tmp_path / "train.jsonl")  # OpenAI wants 10 examples or more
    val = dialogues(tmp_path / "val.jsonl", count=10)
    monkeypatch.setenv("TUNELAB_HOME", str(tmp_path / "server-home"))  # the server's own
    app = create_app(ServeSettings(api_key=KEY, run_worker=False))  # nothing trains there
    monkeypatch.setenv("TUNELAB_HOME", str(tunelab_home))
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    posted: list[str] = []

    async def counting(scope: dict, receive: object, send: object) -> None:
        if scope["type"] == "http" and (scope["method"], scope["path"]) == (
                "POST", "/v1/fine_tuning/jobs"):
            posted.append(scope["path"])
        await app(scope, receive, send)

    with serve_in_thread(counting) as port:
        url = f"http://127.0.0.1:{port}/v1"
        argv = ["sweep", str(train), "--validation-file", str(val), "--provider", "openai",
                "--base-url", url, "--model", MODEL, "--epochs", "1,2",
                "--learning-rate", "0.5,1,2", "--yes", "--no-wait", "--json"]
        code, summary = json_out(argv)
        assert code == 0 and summary["ended"] == "created"
        assert len(posted) == 6
        jobs = plans.trial_jobs(summary["sweep"])
        assert sorted(jobs) == list(range(6))
        assert {job.provider for job in jobs.values()} == {"openai"}
        assert {(job.hyperparameters["epochs"], job.hyperparameters["learning_rate"])
                for job in jobs.values()} == {(e, lr) for e in (1, 2) for lr in (0.5, 1, 2)}
        client = openai.OpenAI(api_key=KEY, base_url=url)
        remote = {job.id: job for job in client.fine_tuning.jobs.list(limit=50)}
        assert set(remote) == {job.id for job in jobs.values()}
        assert len(client.files.list().data) == 2  # training and validation, uploaded once
        for job in jobs.values():
            assert remote[job.id].hyperparameters.n_epochs == job.hyperparameters["epochs"]
            assert remote[job.id].metadata["sweep"] == summary["sweep"]

        code, again = json_out(argv)  # the same command: the same sweep, nothing created
        assert code == 0 and again["sweep"] == summary["sweep"] and len(posted) == 6
        code, resumed = json_out(["sweep", "--resume", summary["sweep"], "--no-wait",
                                  "--json"])
        assert code == 0 and resumed["sweep"] == summary["sweep"] and len(posted) == 6
        assert [row["job_id"] for row in resumed["trials"]] == [
            row["job_id"] for row in summary["trials"]]

        # Killed between a create and its registry row: the provider has trial 4's job and
        # tunelab never recorded it. The resume finds it by its labels and pays nothing.
        lost = jobs[4].id
        with sqlite3.connect(tunelab_home / "registry.sqlite") as db:
            db.execute("DELETE FROM jobs WHERE id = ?", (lost,))
        assert 4 not in plans.trial_jobs(summary["sweep"])
        code, adopted = json_out(["sweep", "--resume", summary["sweep"], "--no-wait", "--json"])
        assert code == 0 and len(posted) == 6
        assert plans.trial_jobs(summary["sweep"])[4].id == lost
        assert [row["job_id"] for row in adopted["trials"]] == [
            row["job_id"] for row in summary["trials"]]


def test_resuming_an_unknown_sweep_names_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sweep", "--resume", "sweep-000000000000"]) == 2
    assert "no sweep 'sweep-000000000000'" in capsys.readouterr().err


def test_cloud_sweep_on_a_shut_down_model_is_refused_before_anything_is_sent(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train, val, _ = write_data(tmp_path / "data")
    code = main(["sweep", str(train), "--validation-file", str(val), "--provider", "openai",
                 "--model", "gpt-3.5-turbo-0125", "--epochs", "1,2", "--yes"])
    assert code == 2
    assert "shut down" in capsys.readouterr().err
    with open_registry() as registry:
        assert registry.list_jobs() == []


# the flags, without a model -------------------------------------------------------------
def test_lists_ranges_and_fixed_values() -> None:
    fixed, space = parse_flags({"learning_rate": "1e-4, 5e-4", "lora_r": "8",
                                "epochs": "1..3", "lr_scheduler": "linear,cosine",
                                "seed": None})
    assert fixed == {"lora_r": 8}
    assert space == {"learning_rate": Choices((1e-4, 5e-4)),
                     "epochs": Range(1, 3, log=False, integer=True),
                     "lr_scheduler": Choices(("linear", "cosine"))}
    _, ranged = parse_flags({"learning_rate": "1e-5..1e-3"})
    assert ranged["learning_rate"] == Range(1e-5, 1e-3, log=True, integer=False)
    assert grid({"learning_rate": Choices((1e-4, 5e-4)), "lora_r": Choices((8, 16))}) == [
        {"learning_rate": 1e-4, "lora_r": 8}, {"learning_rate": 1e-4, "lora_r": 16},
        {"learning_rate": 5e-4, "lora_r": 8}, {"learning_rate": 5e-4, "lora_r": 16}]


@pytest.mark.parametrize(("flags", "message"), [
    ({"learning_rate": "1e-4,x"}, "--learning-rate 1e-4,x: 'x' is not a number"),
    ({"lora_r": "8,16.5"}, "--lora-r 8,16.5: '16.5' is not a whole number"),
    ({"lr_scheduler": "cosine,steep"}, "'steep' is not one of linear, cosine, constant"),
    ({"learning_rate": "1e-3..1e-5"}, "low end must be below its high end"),
    ({"learning_rate": "0..1e-3"}, "must stay above 0"),
    ({"epochs": "1,1"}, "listed twice"),
])
def test_bad_flag_values_are_named(flags: dict, message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        parse_flags(flags)


@pytest.mark.parametrize(("extra", "message"), [
    (["--learning-rate", "1e-4"], "nothing to sweep"),
    (["--learning-rate", "1e-5..1e-3"], "a range cannot be enumerated as a grid"),
    (["--learning-rate", "1e-4,2"], "--learning-rate: input should be less than or equal to 1"),
    (["--learning-rate", "1e-4,2e-4", "--trials", "0"], "--trials 0: needs at least 1"),
    (["--epochs", "1,2", "--provider", "openai", "--lora-r", "4,8"],
     "--lora-r: a cloud provider does not take this setting"),
])
def test_bad_sweeps_are_refused_before_any_model_loads(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str],
        message: str) -> None:
    train, val, _ = write_data(tmp_path / "data")
    assert main(["sweep", str(train), "--validation-file", str(val), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not list((tmp_path / "home" / "sweeps").glob("*"))


def test_a_sweep_needs_a_validation_file(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    train, _, _ = write_data(tmp_path / "data")
    assert main(["sweep", str(train), "--learning-rate", "1e-4,2e-4"]) == 2
    assert "--validation-file is missing" in capsys.readouterr().err


def test_tpe_samples_inside_the_space_and_resumes_from_the_registry() -> None:
    from tunelab.registry import JobRecord

    space = {"learning_rate": Range(1e-5, 1e-3, log=True, integer=False),
             "lora_r": Choices((8, 16))}
    schedule = TpeSchedule(space, 6, seed=3, finished={}, started={})
    seen = []
    for index, params in schedule:
        assert 1e-5 <= params["learning_rate"] <= 1e-3 and params["lora_r"] in (8, 16)
        seen.append(params)
        schedule.tell(index, params, abs(params["learning_rate"] - 1e-4), "succeeded")
    assert len(seen) == 6 and len(schedule.study.trials) == 6

    def job(index: int) -> JobRecord:
        return JobRecord(id=f"ftjob-{index}", provider="local", status="succeeded",
                         created_at=0.0, updated_at=0.0, hyperparameters=seen[index])

    done = {i: (seen[i], abs(seen[i]["learning_rate"] - 1e-4), "succeeded") for i in (0, 1)}
    resumed = TpeSchedule(space, 6, seed=3, finished=done, started={0: job(0), 1: job(1)})
    assert len(resumed.study.trials) == 2  # the finished trials, replayed
    order = list(resumed)
    assert [params for _, params in order[:2]] == seen[:2]
    assert len(order) == 6


def test_early_stopping_needs_a_validation_file(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    train, _, _ = write_data(tmp_path / "data")
    assert main(["train", str(train), "--early-stopping-patience", "2", "--dry-run"]) == 2
    assert "--early-stopping-patience: needs a validation file" in capsys.readouterr().err
