"""`tunelab jobs ...` and `tunelab checkpoints` over registry rows (no model needed)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tunelab.cli import main
from tunelab.config import TrainConfig
from tunelab.registry import Checkpoint, JobRecord, open_registry


def make_job(job_id: str, *, status: str = "succeeded", lr: float = 5e-4,
             val: list[float] = (), run_dir: Path | None = None, **fields) -> JobRecord:
    now = time.time()
    with open_registry() as registry:
        job = registry.create_job(JobRecord(
            id=job_id, provider=fields.pop("provider", "local"), status=status,
            created_at=now - 60, updated_at=now,
            finished_at=now if status in ("succeeded", "cancelled") else None,
            base_model="HuggingFaceTB/SmolLM2-135M-Instruct",
            config=TrainConfig(learning_rate=lr, epochs=1, batch_size=2),
            metrics={"train_loss": 1.5, "last_train_loss": 1.0, "tokens_per_s": 200.0},
            run_dir=str(run_dir) if run_dir else None, **fields))
        for step, loss in enumerate(val, 1):
            registry.add_metrics(job_id, step, {"train_loss": loss + 0.1, "valid_loss": loss,
                                                "full_valid_loss": loss})
        registry.add_event(job_id, "job created")
    return job


def test_list_show_and_events(capsys) -> None:
    make_job("ftjob-a")
    make_job("ftjob-b", status="running")
    assert main(["jobs", "list", "--json"]) == 0
    ids = [row["id"] for row in json.loads(capsys.readouterr().out)["jobs"]]
    assert sorted(ids) == ["ftjob-a", "ftjob-b"]
    assert main(["jobs", "show", "ftjob-a", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["status"] == "succeeded" and shown["config"]["epochs"] == 1
    assert main(["jobs", "events", "ftjob-a", "--json"]) == 0
    assert [e["message"] for e in json.loads(capsys.readouterr().out)["events"]] == [
        "job created"]
    assert main(["jobs", "list"]) == 0
    assert "ftjob-b" in capsys.readouterr().out


def test_compare_shows_config_diff_losses_and_speed(capsys) -> None:
    make_job("ftjob-a", lr=1e-4, val=[2.0, 1.5, 1.7])
    make_job("ftjob-b", lr=5e-4, val=[1.8, 1.2])
    assert main(["jobs", "compare", "ftjob-a", "ftjob-b", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["config_diff"] == {"learning_rate": [1e-4, 5e-4]}
    assert report["results"]["best_valid_loss"] == [1.5, 1.2]
    assert report["results"]["valid_loss"] == [1.7, 1.2]
    assert report["results"]["last_train_loss"] == [1.0, 1.0]
    assert report["results"]["tokens_per_s"] == [200.0, 200.0]
    assert report["results"]["duration_s"][0] > 0


def test_cancel_a_local_job_that_no_process_runs(capsys, tmp_path: Path) -> None:
    make_job("ftjob-stale", status="running", run_dir=tmp_path)
    assert main(["jobs", "cancel", "ftjob-stale", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["result"] == "cancelled"
    with open_registry() as registry:
        assert registry.get_job("ftjob-stale").status == "cancelled"
    assert main(["jobs", "cancel", "ftjob-stale", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["result"] == "finished"


def test_cancel_a_live_local_job_leaves_a_request_for_the_trainer(capsys,
                                                                   tmp_path: Path) -> None:
    import os

    (tmp_path / "train.pid").write_text(str(os.getpid()))  # this process is alive
    make_job("ftjob-live", status="running", run_dir=tmp_path)
    assert main(["jobs", "cancel", "ftjob-live", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["result"] == "requested"
    assert (tmp_path / "cancel.request").is_file()
    with open_registry() as registry:  # cancelled at once, whoever asks; the run stops after
        job = registry.get_job("ftjob-live")  # its step
        assert (job.status, job.native_status) == ("cancelled", "cancelling")


def test_watch_a_finished_local_job_prints_its_events(capsys) -> None:
    make_job("ftjob-done")
    assert main(["jobs", "watch", "ftjob-done", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["status"] == "succeeded"


def test_unknown_job_is_one_line_exit_2(capsys) -> None:
    assert main(["jobs", "show", "ftjob-nope"]) == 2
    err = capsys.readouterr().err
    assert "no job 'ftjob-nope'" in err and "Traceback" not in err


def test_checkpoints_lists_rows_and_pointers(capsys, tunelab_home: Path) -> None:
    make_job("ftjob-c")
    with open_registry() as registry:
        for name, kind, step in (("step-000002", "step", 2), ("epoch-001", "epoch", 4),
                                 ("latest", "latest", 4)):
            folder = tunelab_home / "runs" / "ftjob-c" / "checkpoints" / name
            folder.mkdir(parents=True)  # listed only while the folder is there
            registry.upsert_checkpoint(Checkpoint(
                "ftjob-c", name, kind, time.time(), step, 1.0,
                str(folder), {"train_loss": 0.5, "valid_loss": 0.7}))
    assert main(["checkpoints", "ftjob-c", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["checkpoints"]
    assert [(row["name"], row["kind"]) for row in rows] == [
        ("step-000002", "step"), ("epoch-001", "epoch"), ("latest", "latest")]
    assert main(["jobs", "checkpoints", "ftjob-c", "--json"]) == 0  # the same, by the contract
    assert json.loads(capsys.readouterr().out)["checkpoints"] == [
        {**row, "model": None} for row in rows]
    assert main(["checkpoints", "ftjob-c"]) == 0
    table = capsys.readouterr().out
    assert "epoch-001" in table and "0.5000" in table and "0.7000" in table
