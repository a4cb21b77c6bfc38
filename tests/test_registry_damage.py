"""A registry or home that cannot be used, and job states that must not move (issue 13).

Items: 11 (a terminal status is final), 13 (a damaged registry is one line with the fix, exit
2, and `serve` refuses to start on it), 14 (a newer schema is refused), 16 (checkpoints
deleted from disk are not listed), 17 (a home that cannot be created). Item 15 (resume from
a damaged checkpoint) trains the embedded model, at the end of this file.

Read-only cases: root ignores file modes, so as root the immutable flag (chattr +i) stands in
for them; it binds root too, and sqlite sees the same refusal.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import sqlite3
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tunelab.cli import main
from tunelab.config import TrainConfig
from tunelab.errors import RegistryError
from tunelab.registry import SERVER, Checkpoint, JobRecord, open_registry
from tunelab.registry.migrations import MIGRATIONS

TERMINAL_CASES = ("succeeded", "failed", "cancelled")


def make_job(registry, job_id: str, status: str = "queued", **fields) -> JobRecord:
    now = time.time()
    return registry.create_job(JobRecord(id=job_id, provider="local", status=status,
                                         created_at=now, updated_at=now, **fields))


def filled_registry(home: Path, jobs: int = 3, events: int = 300) -> Path:
    """A registry of several pages, closed (its WAL folded back in, as on disk at rest)."""
    with open_registry() as registry:
        for index in range(jobs):
            make_job(registry, f"ftjob-{index}", status="succeeded",
                     config=TrainConfig(epochs=index + 1))
            for seq in range(events):
                registry.add_event(f"ftjob-{index}", f"step {seq}: " + "x" * 80)
    path = home / "registry.sqlite"
    assert path.is_file() and not Path(f"{path}-wal").exists()
    return path


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert "Traceback" not in captured.err and len(err.splitlines()) == 1, captured.err
    return err


# item 11: terminal states never change ------------------------------------------------
@pytest.mark.parametrize("final", TERMINAL_CASES)
def test_a_finished_job_keeps_its_status_whatever_writes_next(final: str) -> None:
    with open_registry() as registry:
        make_job(registry, "ftjob-t", status="running")
        done = registry.update_job("ftjob-t", status=final)
        for later in ("succeeded", "failed", "cancelled", "running", "queued"):
            if later == final:
                continue
            kept = registry.update_job("ftjob-t", status=later, fine_tuned_model="ft:late")
            assert kept.status == final and kept.fine_tuned_model is None
            assert registry.transition("ftjob-t", (final,), status=later) is None
        assert registry.get_job("ftjob-t").finished_at == done.finished_at
        # Fields other than the status still change, and so does the status through the
        # one door a resume uses.
        assert registry.update_job("ftjob-t", metrics={"steps": 2}).metrics == {"steps": 2}
        assert registry.reopen("ftjob-t", status="queued", finished_at=None).status == "queued"


def test_the_worker_finishing_a_cancelled_job_leaves_it_cancelled(tunelab_home: Path) -> None:
    """The race of item 11: the client cancels while the last step runs; the trainer then
    reports success and the worker records the outcome."""
    from tunelab.server.jobs import ServerJobs
    from tunelab.server.worker import Worker

    with open_registry() as registry:
        job = make_job(registry, "ftjob-race", status="running", origin=SERVER)
        jobs = ServerJobs(registry, tunelab_home)
        jobs.cancel(job.id)  # the route's write, while the trainer is still going
        Worker(jobs)._finish(job, {"status": "succeeded",
                                   "fine_tuned_model": "ft:SmolLM2:x:ftjob-race"})
        final = registry.get_job(job.id)
        assert (final.status, final.fine_tuned_model) == ("cancelled", None)
        assert registry.list_events(job.id)[-1].message == "The job was cancelled"


# item 13: a damaged registry ------------------------------------------------------------
def truncate_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def random_bytes(path: Path) -> None:
    path.write_bytes(random.Random(13).randbytes(64 * 1024))


def corrupt_page(path: Path, table: str = "jobs") -> None:
    """Overwrite the root page of `table` with garbage, leaving the header and schema."""
    with sqlite3.connect(path) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?",
                            (table,)).fetchone()[0]
    conn.close()
    with open(path, "r+b") as handle:
        handle.seek((root - 1) * page_size)
        handle.write(random.Random(root).randbytes(page_size))


def folder_in_place(path: Path) -> None:
    path.unlink()
    (path / "inside").mkdir(parents=True)


DAMAGE = {"half-truncated": truncate_half, "random bytes": random_bytes,
          "corrupt page": corrupt_page, "a folder": folder_in_place}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_registry_is_one_line_with_the_fix(damage: str, tunelab_home: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = filled_registry(tunelab_home)
    DAMAGE[damage](path)
    assert main(["jobs", "list"]) == 2
    err = one_line_error(capsys)
    assert str(path) in err and "new, empty registry" in err
    assert main(["jobs", "show", "ftjob-1", "--json"]) == 2
    one_line_error(capsys)


def test_serve_refuses_a_damaged_registry_before_listening(
        tunelab_home: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    path = filled_registry(tunelab_home)
    corrupt_page(path, "events")  # nothing the app reads at start: the open check finds it

    def listening(*_args, **_kwargs) -> None:
        raise AssertionError("uvicorn started on a damaged registry")

    monkeypatch.setattr(uvicorn, "run", listening)
    assert main(["serve", "--port", "0"]) == 2
    err = one_line_error(capsys)
    assert "is damaged" in err and str(path) in err


def test_one_row_with_bad_json_is_skipped_with_a_warning(
        tunelab_home: Path, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    path = filled_registry(tunelab_home, events=1)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE jobs SET config_json = '{\"epochs\": 1' WHERE id = 'ftjob-1'")
    conn.close()
    with caplog.at_level(logging.WARNING, logger="tunelab.registry"):
        assert main(["jobs", "list", "--json"]) == 0
    listed = [job["id"] for job in json.loads(capsys.readouterr().out)["jobs"]]
    assert sorted(listed) == ["ftjob-0", "ftjob-2"]
    assert any("job ftjob-1" in record.getMessage() for record in caplog.records)
    assert main(["jobs", "show", "ftjob-1"]) == 2
    assert "ftjob-1" in one_line_error(capsys)


@pytest.fixture
def read_only() -> Iterator:
    """Make paths read-only for this process, even as root; undone afterwards."""
    locked: list[Path] = []

    root = os.geteuid() == 0

    def lock(path: Path) -> None:
        locked.append(path)
        path.chmod(stat.S_IMODE(path.stat().st_mode) & ~0o222)
        if root and (shutil.which("chattr") is None or subprocess.run(
                ["chattr", "+i", str(path)], capture_output=True).returncode != 0):
            pytest.skip("running as root on a file system without chattr +i")

    yield lock
    for path in reversed(locked):
        if root:
            subprocess.run(["chattr", "-i", str(path)], capture_output=True)
        path.chmod(stat.S_IMODE(path.stat().st_mode) | 0o200)


def test_train_on_a_read_only_registry_is_one_line(tmp_path: Path, tunelab_home: Path, read_only,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = filled_registry(tunelab_home, events=1)
    train = tmp_path / "train.jsonl"
    train.write_text(json.dumps({"messages": [{"role": "user", "content": "Hi"},
                                              {"role": "assistant", "content": "Hello"}]})
                     + "\n", encoding="utf-8")
    read_only(path)
    assert main(["train", str(train), "--max-steps", "1", "--json"]) == 2
    err = one_line_error(capsys)
    assert f"the registry {path} is read-only" in err and "writable" in err


def test_jobs_list_in_a_read_only_home_is_one_line(tunelab_home: Path, read_only,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    filled_registry(tunelab_home, events=1)
    read_only(tunelab_home)
    assert main(["jobs", "list"]) == 2
    err = one_line_error(capsys)
    assert f"the folder {tunelab_home} holding the registry is read-only" in err
    assert "TUNELAB_HOME" in err


def test_the_open_check_costs_little_and_passes_a_healthy_registry(tunelab_home: Path) -> None:
    """A registry of many rows opens, checked, and reads back (the cost is in damage.py)."""
    with open_registry() as registry:
        make_job(registry, "ftjob-m")
        for step in range(2000):
            registry.add_metrics("ftjob-m", step, {"train_loss": 1.0})
    with open_registry() as registry:
        assert len(registry.list_metrics("ftjob-m")) == 2000


# item 14: a newer schema ----------------------------------------------------------------
def test_a_registry_from_a_newer_tunelab_is_refused(tunelab_home: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = filled_registry(tunelab_home, events=1)
    known = MIGRATIONS[-1][0]
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {known + 5}")
    conn.close()
    assert main(["jobs", "list"]) == 2
    err = one_line_error(capsys)
    assert f"schema version {known + 5}" in err and f"knows up to {known}" in err
    assert "upgrade tunelab" in err
    with pytest.raises(RegistryError):  # and nothing was migrated or written on the way
        open_registry()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == known + 5
    conn.close()


# item 16: checkpoints deleted from disk ---------------------------------------------------
def test_checkpoints_deleted_from_disk_are_not_listed(
        tunelab_home: Path, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    root = tunelab_home / "runs" / "ftjob-k" / "checkpoints"
    with open_registry() as registry:
        make_job(registry, "ftjob-k", status="succeeded", run_dir=str(root.parent))
        for step in (1, 2, 3):
            (root / f"step-00000{step}").mkdir(parents=True)
            registry.upsert_checkpoint(Checkpoint("ftjob-k", f"step-00000{step}", "step",
                                                  time.time(), step, 0.0,
                                                  str(root / f"step-00000{step}")))
    shutil.rmtree(root / "step-000002")
    with caplog.at_level(logging.WARNING, logger="tunelab.registry"):
        assert main(["checkpoints", "ftjob-k", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["checkpoints"]
    assert [row["name"] for row in rows] == ["step-000001", "step-000003"]
    assert any("1 checkpoint(s) not listed" in record.getMessage()
               and "step-000002" in record.getMessage() for record in caplog.records)


# item 17: a home that cannot be created ----------------------------------------------------
@pytest.fixture
def home_in_the_way(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """TUNELAB_HOME below a plain file, so it cannot be created; no cache override, and
    the temp folder inside this test's own."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder\n")
    monkeypatch.setenv("TUNELAB_HOME", str(blocker / "home"))
    monkeypatch.delenv("TUNELAB_CACHE_DIR")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    return blocker / "home"


def test_data_check_needs_no_home(home_in_the_way: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "chat.jsonl"
    data.write_text("".join(json.dumps({"messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": f"Hi {n}"},
        {"role": "assistant", "content": f"Hello {n}"}]}) + "\n" for n in range(12)),
        encoding="utf-8")
    assert main(["data", "check", str(data)]) == 0
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["jobs", "list"], ["serve", "--port", "0"]])
def test_a_home_that_cannot_be_created_is_one_line(argv: list[str], home_in_the_way: Path,
                                                   capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("uvicorn started"))
    assert main(argv) == 2
    err = one_line_error(capsys)
    assert f"cannot create {home_in_the_way}" in err
    assert "set TUNELAB_HOME to a folder you can write to" in err


# Real tiny runs on the embedded model: the trainer's own finish path (item 11) and resume
# from a damaged checkpoint (item 15). Settings as small as tests/test_train_local.py's.
TINY = ["--max-length", "48", "--batch-size", "1", "--grad-accum", "1", "--learning-rate",
        "2e-3", "--precision", "fp32", "--seed", "7", "--lora-r", "8"]


def tiny_data(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    train = folder / "train.jsonl"
    train.write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": f"Hi, I am {name}."},
        {"role": "assistant", "content": f"Hello {name}!"}]}) + "\n"
        for name in ("Anna", "Boris", "Clara", "Lev")), encoding="utf-8")
    prompts = folder / "prompts.txt"
    prompts.write_text("Who are you?\n", encoding="utf-8")
    return train, prompts


def tiny_config(folder: Path) -> str:
    """The one setting with no flag: keep the after-training samples short."""
    path = folder / "cfg.json"
    path.write_text(json.dumps({"sample_max_new_tokens": 4}), encoding="utf-8")
    return str(path)


@pytest.mark.slow
def test_a_cancel_during_the_last_step_is_final_for_the_trainer(tmp_path: Path) -> None:
    """The client's cancel lands after the loop's last look at `stop` (as `POST .../cancel`
    writes the registry): the run must end cancelled, with no model, not succeeded."""
    from tunelab.config import resolve_config
    from tunelab.local import orchestrator

    train, prompts = tiny_data(tmp_path)
    config = resolve_config(flags={"train_file": str(train), "prompts": str(prompts),
                                   "max_steps": 2, "max_length": 48, "batch_size": 1,
                                   "precision": "fp32", "lora_r": 8, "save_every": 1000,
                                   "sample_max_new_tokens": 4})

    def on_event(payload: dict) -> None:
        if payload.get("type") == "step" and payload["step"] == payload["total_steps"]:
            with open_registry() as registry:
                registry.transition("ftjob-lastcancel", ("queued", "running"),
                                    status="cancelled")

    result = orchestrator.train(config, job_id="ftjob-lastcancel", on_event=on_event)
    with open_registry() as registry:
        job = registry.get_job("ftjob-lastcancel")
    assert (result["status"], job.status, job.fine_tuned_model) == ("cancelled", "cancelled",
                                                                     None)
    assert job.metrics["steps"] == 2  # what it trained is still recorded


def job_state(job_id: str) -> tuple:
    with open_registry() as registry:
        job = registry.get_job(job_id)
    return job.status, job.fine_tuned_model, job.finished_at, job.metrics.get("steps")


@pytest.mark.slow
def test_resume_skips_a_damaged_checkpoint_and_never_fails_a_finished_job(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train, prompts = tiny_data(tmp_path)
    assert main(["train", str(train), "--prompts", str(prompts), "--config",
                 tiny_config(tmp_path), *TINY, "--max-steps", "2", "--save-every", "1",
                 "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    job_id, root = first["id"], Path(first["run_dir"]) / "checkpoints"
    finished = job_state(job_id)
    assert finished[0] == "succeeded" and (root / "step-000001").is_dir()

    # Nothing to extend: refused in one line, the job untouched.
    assert main(["train", "--resume", job_id]) == 2
    assert "already succeeded" in one_line_error(capsys)
    assert job_state(job_id) == finished

    # An attempt that fails once the job is reopened (no example fits in 16 tokens) leaves
    # the succeeded job exactly as it was.
    assert main(["train", "--resume", job_id, "--max-steps", "3", "--max-length", "16"]) == 1
    capsys.readouterr()
    assert job_state(job_id) == finished

    # The latest checkpoint is damaged (a half-written adapter): resume falls back to the
    # one before, says so, and trains on to the new end.
    adapter = root / "step-000002" / "adapter" / "adapter_model.safetensors"
    truncate_half(adapter)
    assert main(["train", "--resume", job_id, "--max-steps", "3", "--json"]) == 0
    resumed = json.loads(capsys.readouterr().out)
    assert resumed["status"] == "succeeded" and resumed["metrics"]["steps"] == 3
    with open_registry() as registry:
        warnings = [event.message for event in registry.list_events(job_id)
                    if event.level == "warning"]
        metric_steps = [row["step"] for row in registry.list_metrics(job_id)]
    assert any("step-000002 cannot be resumed from" in text and "using step-000001" in text
               for text in warnings), warnings
    assert "resumed from step-000001 at step 1" in (Path(first["run_dir"]) / "train.log"
                                                    ).read_text(encoding="utf-8")
    assert metric_steps == sorted(set(metric_steps)) and metric_steps[-1] == 3

    # No checkpoint reads back: refused in one line before anything changes.
    extended = job_state(job_id)
    for state in root.glob("*/state.json"):
        state.write_text("{not json", encoding="utf-8")
    assert main(["train", "--resume", job_id, "--max-steps", "5"]) == 2
    assert "no checkpoint that can be resumed from" in one_line_error(capsys)
    assert job_state(job_id) == extended
