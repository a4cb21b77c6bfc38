"""Real tiny training runs on the embedded SmolLM2-135M: the loop, checkpoints, registry,
resume equality after kill -9, Ctrl-C, and the dry run.

Kept small for a 2-core CPU: a dozen short examples, max_length 48, a handful of steps,
fp32 (the CPU default; bf16 autocast is slower than fp32 on this CPU, see bench/README.md).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tunelab.cli import main
from tunelab.local import checkpoints
from tunelab.local.encoding import IGNORE, encode_example
from tunelab.registry import open_registry
from tunelab.registry.metrics import STEP_METRICS, TRAIN_ACCURACY, VALID_ACCURACY

pytestmark = pytest.mark.slow

NAMES = ["Anna", "Boris", "Clara", "Dmitri", "Elena", "Fyodor", "Galina", "Igor", "Katya",
         "Lev", "Masha", "Nikolai"]
STEPS = 6
TRAIN_ARGS = ["--max-length", "48", "--batch-size", "1", "--grad-accum", "2",
              "--max-steps", str(STEPS), "--learning-rate", "2e-3", "--save-every", "2",
              "--eval-every", "3", "--precision", "fp32", "--seed", "7", "--lora-r", "8"]


def example(name: str) -> dict:
    return {"messages": [{"role": "system", "content": "Be Natasha."},
                         {"role": "user", "content": f"Hi, I am {name}."},
                         {"role": "assistant", "content": f"Hello {name}! I am Natasha."}]}


def write_data(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    train, val = folder / "train.jsonl", folder / "val.jsonl"
    train.write_text("".join(json.dumps(example(name)) + "\n" for name in NAMES))
    val.write_text("".join(json.dumps(example(name)) + "\n" for name in ("Vera", "Yuri")))
    (folder / "prompts.txt").write_text("# one prompt\nWho are you?\n")
    (folder / "cfg.json").write_text(json.dumps({"sample_max_new_tokens": 6}))
    return train, val


def train_command(folder: Path, *extra: str) -> list[str]:
    train, val = write_data(folder)
    return ["train", str(train), "--validation-file", str(val), "--config",
            str(folder / "cfg.json"), "--prompts", str(folder / "prompts.txt"), *TRAIN_ARGS,
            *extra]


def losses(run_dir: Path) -> dict[int, float]:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {line["step"]: line["train_loss"] for line in lines if "train_loss" in line}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, shared_cache: Path) -> dict:
    """One uninterrupted run, shared by the assertions below and the resume comparison."""
    folder = tmp_path_factory.mktemp("reference")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TUNELAB_HOME", str(folder / "home"))
        patch.setenv("TUNELAB_CACHE_DIR", str(shared_cache))
        patch.setenv("HF_HUB_OFFLINE", "1")
        capture = folder / "out.json"
        code = main([*train_command(folder / "data"), "--json", "--suffix", "ref"])
        assert code == 0
        registry = open_registry(folder / "home" / "registry.sqlite")
    return {"folder": folder, "registry": registry, "capture": capture}


def result_of(capsys: pytest.CaptureFixture) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_tiny_run_trains_checkpoints_and_registers(reference: dict) -> None:
    registry = reference["registry"]
    [job] = registry.list_jobs()
    run_dir = Path(job.run_dir)
    assert job.status == "succeeded" and job.provider == "local"
    assert job.fine_tuned_model == f"ft:SmolLM2-135M-Instruct:ref:{job.id}"
    assert set(job.metrics) >= {"train_loss", "last_train_loss", "best_valid_loss",
                                "valid_loss", "trained_tokens", "tokens_per_s"}
    steps = losses(run_dir)
    assert sorted(steps) == list(range(1, STEPS + 1))
    assert steps[STEPS] < steps[1] * 0.7, steps  # the loss falls
    vals = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()
            if "valid_loss" in line]
    assert [line["step"] for line in vals] == [3, 6]
    assert job.metrics["best_valid_loss"] == min(line["valid_loss"] for line in vals)
    assert job.metrics["valid_loss"] == vals[-1]["valid_loss"]
    root = run_dir / "checkpoints"
    latest = checkpoints.read_pointer(root, "latest")
    assert latest.name == "epoch-001"  # 12 examples / (1 x 2 accumulated) = 6 steps: 1 epoch
    assert json.loads((latest / "state.json").read_text())["step"] == STEPS
    assert checkpoints.read_pointer(root, "best") is not None
    for name in ("adapter/adapter_model.safetensors", "optimizer.pt", "scheduler.pt",
                 "rng.pt", "state.json", "hparams.json"):
        assert (checkpoints.read_pointer(root, "latest") / name).is_file(), name
    rows = {row.name: row for row in registry.list_checkpoints(job.id)}
    # saves at steps 2 and 4 (save_every), 3 (new best val loss), then the epoch end at
    # step 6, once: not again as a step checkpoint for its validation
    assert set(rows) == {"latest", "best", "step-000002", "step-000003", "step-000004",
                         "epoch-001"}
    saved = [event.message for event in registry.list_events(job.id)
             if event.message.startswith("checkpoint ") and " saved at step " in event.message]
    assert [message.rsplit(" ", 1)[-1] for message in saved] == ["2", "3", "4", "6"]
    assert not list(root.glob(".tmp-*"))
    assert (run_dir / "adapter" / "adapter_config.json").is_file()
    assert json.loads((run_dir / "config.json").read_text())["max_steps"] == STEPS
    assert "step 6/6" in (run_dir / "train.log").read_text()
    samples = json.loads((run_dir / "samples.json").read_text())["samples"]
    assert [row["prompt"] for row in samples] == ["Who are you?"] and samples[0]["answer"]
    kinds = [event.message for event in registry.list_events(job.id)]
    assert any("job succeeded" in message for message in kinds)


def test_every_metric_the_run_wrote_uses_the_vocabulary(reference: dict) -> None:
    registry = reference["registry"]
    [job] = registry.list_jobs()
    lines = [json.loads(line) for line in
             (Path(job.run_dir) / "metrics.jsonl").read_text().splitlines()]
    rows = registry.list_metrics(job.id)
    written = [set(line) for line in lines + rows]
    written += [set(row.metrics) - {"points_to"} for row in registry.list_checkpoints(job.id)]
    written += [set(event.data) - {"checkpoint", "kind"} for event in registry.list_events(job.id)
                if event.data]
    assert written and all(keys <= set(STEP_METRICS) for keys in written), written
    summary = {"best_valid_loss", "last_train_loss", "steps", "train_seconds"}
    assert set(job.metrics) <= set(STEP_METRICS) | summary
    assert job.metrics["trained_tokens"] == rows[-1]["trained_tokens"] > 0
    # Accuracies are shares of assistant tokens, and training on one answer raises them.
    train = [line[TRAIN_ACCURACY] for line in lines if TRAIN_ACCURACY in line]
    valid = [line[VALID_ACCURACY] for line in lines if VALID_ACCURACY in line]
    assert len(train) == STEPS and len(valid) == 2
    assert all(0 <= value <= 1 for value in train + valid)
    assert train[-1] > train[0]


def test_resume_after_kill_9_repeats_every_loss(reference: dict, tmp_path: Path,
                                                tunelab_home: Path, capsys) -> None:
    args = train_command(tmp_path / "data")
    process = subprocess.Popen([sys.executable, "-m", "tunelab", *args],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        run_dir = wait_for_checkpoint(tunelab_home, process, step=2)
    finally:
        process.kill()  # SIGKILL: no handler runs, nothing gets flushed
        process.wait()
    job_id = run_dir.name
    assert open_registry().get_job(job_id).status == "running"
    assert main(["train", "--resume", job_id, "--json"]) == 0
    assert result_of(capsys)["status"] == "succeeded"
    [reference_job] = reference["registry"].list_jobs()
    expected, resumed = losses(Path(reference_job.run_dir)), losses(run_dir)
    assert sorted(resumed) == sorted(expected)
    for step, loss in expected.items():
        assert abs(resumed[step] - loss) < 1e-4, (step, resumed[step], loss)


def test_ctrl_c_checkpoints_and_leaves_a_resumable_cancelled_job(tmp_path: Path,
                                                                 tunelab_home: Path,
                                                                 capsys) -> None:
    args = train_command(tmp_path / "data", "--save-every", "1000", "--max-steps", "1000")
    process = subprocess.Popen([sys.executable, "-m", "tunelab", *args],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    run_dir = wait_for_metrics(tunelab_home, process)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err.decode()[-2000:]
    job = open_registry().get_job(run_dir.name)
    assert job.status == "cancelled" and job.fine_tuned_model is None
    latest = checkpoints.read_pointer(run_dir / "checkpoints", "latest")
    assert latest is not None and (latest / "optimizer.pt").is_file()
    stopped_at = json.loads((latest / "state.json").read_text())["step"]
    assert main(["train", "--resume", job.id, "--max-steps", str(stopped_at + 1),
                 "--json"]) == 0
    result = result_of(capsys)
    assert result["status"] == "succeeded" and result["metrics"]["steps"] == stopped_at + 1


def test_dry_run_measures_and_registers_nothing(tmp_path: Path, tunelab_home: Path,
                                                capsys) -> None:
    train, val = write_data(tmp_path)
    code = main(["train", str(train), "--validation-file", str(val), "--max-length", "48",
                 "--max-steps", "2", "--batch-size", "2", "--dry-run", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["config"]["precision"] == "auto"
    assert "(fp32)" in report["estimate"]["method"]  # what auto means on a CPU
    assert report["data"]["train"]["examples"] == len(NAMES)
    assert report["plan"] == {"steps_per_epoch": 6, "total_steps": 2, "epochs": 0.33,
                              "examples_per_step": 2}
    assert report["estimate"]["tokens_per_s"] > 0 and report["estimate"]["peak_memory_mb"] > 0
    assert "timed" in report["estimate"]["method"]
    assert not (tunelab_home / "registry.sqlite").exists()
    assert not (tunelab_home / "runs").exists() or not any((tunelab_home / "runs").iterdir())


def test_loss_falls_only_on_assistant_tokens_and_respects_weight() -> None:
    from tunelab.local.model_source import load_tokenizer

    tokenizer = load_tokenizer(None)
    messages = [{"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Skip me", "weight": 0},
                {"role": "user", "content": "Again"},
                {"role": "assistant", "content": "Learn me"}]
    encoded = encode_example(tokenizer, messages)
    learned = tokenizer.decode([token for token, label in zip(encoded.input_ids,
                                                                encoded.labels, strict=True)
                                if label != IGNORE])
    assert learned.startswith("Learn me<|im_end|>")
    assert "Skip" not in learned and "Again" not in learned and "Hi" not in learned


def wait_for_checkpoint(home: Path, process: subprocess.Popen, *, step: int) -> Path:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        for run_dir in (home / "runs").glob("ftjob-*"):
            latest = checkpoints.read_pointer(run_dir / "checkpoints", "latest")
            if latest is not None and latest.name >= f"step-{step:06d}":
                return run_dir
        time.sleep(0.2)
    raise AssertionError(f"no checkpoint at step {step} (exit code {process.poll()})")


def wait_for_metrics(home: Path, process: subprocess.Popen) -> Path:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        for run_dir in (home / "runs").glob("ftjob-*"):
            if (run_dir / "metrics.jsonl").is_file() and os.path.getsize(
                    run_dir / "metrics.jsonl"):
                return run_dir
        time.sleep(0.2)
    raise AssertionError(f"training never logged a step (exit code {process.poll()})")


def test_full_fine_tune_saves_whole_weights_and_resumes_exactly(tmp_path: Path,
                                                                tunelab_home: Path,
                                                                capsys) -> None:
    full = ("--full", "--learning-rate", "1e-4", "--save-every", "1000", "--eval-every", "1000",
            "--json")
    assert main([*train_command(tmp_path / "a", *full), "--max-steps", "3"]) == 0
    uninterrupted = result_of(capsys)
    assert uninterrupted["status"] == "succeeded"
    latest = checkpoints.read_pointer(Path(uninterrupted["run_dir"]) / "checkpoints", "latest")
    assert (latest / "model" / "model.safetensors").is_file()
    assert (latest / "model" / "tokenizer_config.json").is_file()
    assert not (latest / "adapter").exists()

    assert main([*train_command(tmp_path / "b", *full), "--max-steps", "2"]) == 0
    stopped = result_of(capsys)
    assert main(["train", "--resume", stopped["id"], "--max-steps", "3", "--json"]) == 0
    assert result_of(capsys)["status"] == "succeeded"
    expected = losses(Path(uninterrupted["run_dir"]))
    resumed = losses(Path(stopped["run_dir"]))
    assert sorted(resumed) == [1, 2, 3]
    for step, loss in expected.items():
        assert abs(resumed[step] - loss) < 1e-4, (step, resumed[step], loss)


CLOUD_JOB = "ftjob-cloud0000000000000001"


def cloud_events() -> list[dict]:
    """What OpenAI reports for a 2-step job with a validation file, oldest first."""
    def metrics(number: int, step: int, **values: float) -> dict:
        return {"object": "fine_tuning.job.event", "id": f"ftevent-{number}",
                "created_at": 1764000000 + number, "level": "info", "type": "metrics",
                "message": f"Step {step}/2: training loss={values['train_loss']}",
                "data": {"step": step, "total_steps": 2, **values}}

    return [{"object": "fine_tuning.job.event", "id": "ftevent-1", "created_at": 1764000001,
             "level": "info", "type": "message", "message": "Fine-tuning job started"},
            metrics(2, 1, train_loss=2.0, valid_loss=2.1, train_mean_token_accuracy=0.4),
            metrics(3, 2, train_loss=1.2, valid_loss=1.6, full_valid_loss=1.5,
                    train_mean_token_accuracy=0.6, valid_mean_token_accuracy=0.55)]


class CloudJobApi(BaseHTTPRequestHandler):
    """OpenAI's fine-tuning API answering for one finished job (the cloud is not here)."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        path = self.path.split("?")[0]
        if path == f"/v1/fine_tuning/jobs/{CLOUD_JOB}":
            body = {"id": CLOUD_JOB, "object": "fine_tuning.job", "status": "succeeded",
                    "model": "gpt-4o-mini-2024-07-18", "created_at": 1764000000,
                    "finished_at": 1764000600, "training_file": "file-train",
                    "validation_file": "file-valid", "trained_tokens": 5000,
                    "fine_tuned_model": f"ft:gpt-4o-mini-2024-07-18:org::{CLOUD_JOB[6:]}",
                    "hyperparameters": {"n_epochs": 1}, "organization_id": "org-1",
                    "result_files": [], "seed": 1, "error": None}
        elif path == f"/v1/fine_tuning/jobs/{CLOUD_JOB}/events":
            body = {"object": "list", "data": cloud_events()[::-1], "has_more": False}
        else:
            body = {"object": "list", "data": [], "has_more": False}
        payload = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


def test_jobs_compare_shows_a_local_and_a_cloud_validation_loss_side_by_side(
        reference: dict, tunelab_home: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    [local] = reference["registry"].list_jobs()
    tunelab_home.mkdir(parents=True, exist_ok=True)
    # sqlite's backup, not a file copy: the registry is in WAL mode, recent rows in -wal
    with sqlite3.connect(reference["folder"] / "home" / "registry.sqlite") as source, \
            sqlite3.connect(tunelab_home / "registry.sqlite") as target:
        source.backup(target)
    server = ThreadingHTTPServer(("127.0.0.1", 0), CloudJobApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-compare")
    try:  # the cloud job is recorded the way every cloud job is: by watching it
        assert main(["jobs", "watch", CLOUD_JOB, "--provider", "openai", "--base-url",
                     f"http://127.0.0.1:{server.server_port}/v1", "--interval", "0.05",
                     "--json"]) == 0
    finally:
        server.shutdown()
    capsys.readouterr()
    assert main(["jobs", "compare", local.id, CLOUD_JOB, "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert results["valid_loss"] == [local.metrics["valid_loss"], 1.5]  # the whole file's
    assert results["best_valid_loss"] == [local.metrics["best_valid_loss"], 1.5]
    assert results["valid_mean_token_accuracy"][1] == 0.55
    assert results["last_train_loss"][1] == 1.2
    assert main(["jobs", "compare", local.id, CLOUD_JOB]) == 0
    table = capsys.readouterr().out
    assert "valid_loss" in table and "1.5000" in table


def test_a_sample_step_that_breaks_leaves_the_job_succeeded(tmp_path: Path) -> None:
    """The weights are saved before the sample answers: a prompts file that went bad after
    the up-front check (here: re-saved as Latin-1) is a warning, not a failed job."""
    from tunelab.config import validate_config
    from tunelab.local import orchestrator

    prompts = tmp_path / "prompts.txt"
    prompts.write_bytes("Привет?\n".encode("cp1251"))
    config = validate_config({"train_file": str(tmp_path / "t.jsonl"), "prompts": str(prompts)})
    messages: list[tuple[str, str]] = []

    class Recorder:
        def message(self, text: str, level: str = "info") -> None:
            messages.append((level, text))

    orchestrator._write_samples(config, tmp_path, [], Recorder())
    assert [level for level, _ in messages] == ["warning"]
    assert "sample answers skipped" in messages[0][1]
