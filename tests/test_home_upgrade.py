"""A TUNELAB_HOME written before the registry held the server's jobs (migration 3) opens,
lists, shows and resumes with today's code, and `tunelab serve` still has its jobs and files.
One written before job configs had kinds (migration 4) reads each row's config as its typed
schema.

The real test builds the old home with the old code itself (commit 133f765, extracted with
`git archive` and run in a subprocess); fast tests cover the merge rules on documents
written by hand in the same format, and the config kinds on rows of every old shape.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import openai
import pytest

from faultproxy import dialogues, serve_in_thread
from tunelab.cli import main
from tunelab.config import TrainConfig
from tunelab.registry import SERVER, open_registry
from tunelab.registry.job_config import CloudJob, ImportedJob
from tunelab.registry.migrations import MIGRATIONS
from tunelab.server import ServeSettings, create_app

REPO = Path(__file__).resolve().parents[1]
OLD_COMMIT = "133f765"  # the last main before the redesign of issue 12
MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"


def cli_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    capsys.readouterr()
    code = main([*args, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out.strip().splitlines()[-1])


# the merge rules, on documents in the old format -------------------------------------------
def registry_at_version_2(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path)
    for number, script in MIGRATIONS[:2]:
        conn.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")
    return conn


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")


def test_documents_merge_into_the_rows_the_trainer_wrote(tunelab_home: Path) -> None:
    tunelab_home.mkdir(parents=True, exist_ok=True)
    conn = registry_at_version_2(tunelab_home / "registry.sqlite")
    # The worker ran ftjob-b: the trainer registered it and stopped it at a shutdown.
    conn.execute("INSERT INTO jobs (id, provider, status, training_file, config_json, "
                 "metrics_json, run_dir, created_at, updated_at, finished_at) VALUES "
                 "('ftjob-b', 'local', 'cancelled', '/srv/files/file-1.jsonl', '{\"seed\": 3}', "
                 "'{\"trained_tokens\": 640}', '/srv/runs/ftjob-b', 100.4, 130.0, 130.0)")
    conn.execute("INSERT INTO events VALUES ('ftjob-b', 1, 100.5, 'info', 'message', "
                 "'job created; run folder /srv/runs/ftjob-b', NULL)")
    conn.execute("INSERT INTO jobs (id, provider, status, created_at, updated_at) VALUES "
                 "('ftjob-cli', 'local', 'succeeded', 50.0, 60.0)")
    conn.commit()
    conn.close()
    server = tunelab_home / "server"
    write_json(server / "files" / "file-1.json",
               {"id": "file-1", "object": "file", "bytes": 3, "created_at": 90,
                "filename": "train.jsonl", "purpose": "fine-tune", "status": "processed"})
    (server / "files" / "file-1.jsonl").write_bytes(b"{}\n")
    for seq, job_id, status in ((1, "ftjob-b", "running"), (2, "ftjob-a", "queued")):
        write_json(server / "jobs" / f"{job_id}.json", {
            "id": job_id, "seq": seq, "created_at": 100, "model": MODEL,
            "training_file": "file-1", "validation_file": None, "suffix": "s", "seed": 3,
            "hyperparameters": {"n_epochs": 1}, "metadata": {"team": job_id},
            "status": status, "config": {"seed": 3}, "trained_tokens": 99})
    (server / "jobs" / "ftjob-b.events.jsonl").write_text(
        json.dumps({"id": "ftevent-b-1", "created_at": 100, "level": "info",
                    "message": "Created fine-tuning job: ftjob-b", "type": "message",
                    "data": {}}) + "\n" + "{torn", encoding="utf-8")

    with open_registry() as registry:
        b, a = registry.get_job("ftjob-b"), registry.get_job("ftjob-a")
        # the document was the queue: its status and file ids win; the trainer's run stays
        assert (b.status, b.training_file, b.origin) == ("running", "file-1", SERVER)
        assert b.run_dir == "/srv/runs/ftjob-b" and b.metadata == {"team": "ftjob-b"}
        assert b.metrics["trained_tokens"] == 640  # the trainer's count is kept
        assert (a.status, a.provider, a.hyperparameters) == ("queued", "local", {"n_epochs": 1})
        assert a.metrics == {"trained_tokens": 99} and a.run_dir is None
        assert registry.job_ids(origin=SERVER) == ["ftjob-b", "ftjob-a"]  # the old seq
        assert [j.id for j in registry.list_jobs()][-1] == "ftjob-cli"
        assert [e.message for e in registry.list_events("ftjob-b")] == [
            "Created fine-tuning job: ftjob-b", "job created; run folder /srv/runs/ftjob-b"]
        uploaded = registry.find_file(SERVER, "file-1")
        assert uploaded is not None and uploaded.bytes == 3 and len(uploaded.sha256) == 64
    assert (server / "jobs" / "ftjob-a.json").exists()  # left as it was, read by nothing


# the config kinds, on rows in every shape the old code wrote -------------------------------
def registry_at_version_3(path: Path) -> sqlite3.Connection:
    conn = registry_at_version_2(path)
    MIGRATIONS[2][1](conn, path.parent)  # a Python step: the server documents (none here)
    conn.execute("PRAGMA user_version = 3")
    conn.commit()
    return conn


# What each writer put in config_json before there were kinds.
OLD_LOCAL = {key: value for key, value in TrainConfig(
    train_file="/data/train.jsonl", max_steps=2, seed=7, lora_r=8).model_dump(mode="json").items()
    if key not in ("method", "kernels")}  # fields added since: their defaults apply
OLD_CLOUD = {"hyperparameters": {"n_epochs": 3, "learning_rate": None, "batch_size": None},
             "seed": None, "estimated_cost": {"provider": "openai", "epochs": 3,
                                              "training_cost": 0.12, "shutdown": "2027-01-14"},
             "local_files": {"training_file": "/data/train.jsonl"}}
OLD_MIGRATE = {"inventoried_at": 1700.0, "shutdown": "2027-01-14",
               "days_left_source": "openai deprecations", "result_files": ["file-r"],
               "checkpoints": [{"id": "ftckpt-1", "step": 10, "model": "ft:gpt:o::c:ckpt-1"}],
               "pulled": {"file-t": {"role": "training_file", "sha256": "ab",
                                     "path": "/blobs/ab.jsonl", "bytes": 10}},
               "checks": {"file-t": {"ok": True, "examples": 10, "errors": 0, "warnings": 1,
                                     "first_error": None}},
               "held_out": {"examples": 10, "train": 9, "val": 1, "train_file": "/h/t.jsonl",
                            "val_file": "/h/v.jsonl", "seed": 0},
               "pulled_at": 1800.0}
OLD_ROWS = {  # id: (provider, origin, config_json)
    "ftjob-cli": ("local", None, json.dumps(OLD_LOCAL)),
    "ftjob-served": ("local", SERVER, json.dumps({"seed": 3, "max_steps": 3})),
    "ftjob-cloud": ("openai", None, json.dumps(OLD_CLOUD)),
    "ftjob-seen": ("openai", None, json.dumps({"local_files": {}})),  # first seen on a refresh
    "ftjob-imported": ("openai", None, json.dumps(
        {"migrate": OLD_MIGRATE, "local_files": {"training_file": "/blobs/ab.jsonl"}})),
    "ftjob-ours-inventoried": ("openai", None, json.dumps({**OLD_CLOUD, "migrate": {}})),
    "ftjob-bare": ("local", None, "{}"),
    "ftjob-torn": ("local", None, '{"seed": 3'),
}


def test_old_rows_of_every_shape_read_as_typed_configs(
        tunelab_home: Path, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    from tunelab.server.dashboard.views import source

    tunelab_home.mkdir(parents=True, exist_ok=True)
    conn = registry_at_version_3(tunelab_home / "registry.sqlite")
    for seq, (job_id, (provider, origin, config)) in enumerate(OLD_ROWS.items(), start=1):
        conn.execute("INSERT INTO jobs (id, provider, status, origin, config_json, seq, "
                     "created_at, updated_at) VALUES (?, ?, 'succeeded', ?, ?, ?, ?, ?)",
                     (job_id, provider, origin, config, seq, 100.0 - seq, 100.0))
    conn.commit()
    conn.close()

    with caplog.at_level("WARNING", logger="tunelab.registry"), open_registry() as registry:
        jobs = {job.id: job for job in registry.list_jobs()}
        assert set(jobs) == set(OLD_ROWS) - {"ftjob-torn"}  # still damaged, skipped alone
        assert "job ftjob-torn" in caplog.text
        assert {job_id: job.kind for job_id, job in jobs.items()} == {
            "ftjob-cli": "local", "ftjob-served": "local", "ftjob-cloud": "cloud",
            "ftjob-seen": "cloud", "ftjob-imported": "imported",
            "ftjob-ours-inventoried": "imported", "ftjob-bare": None}
        cli, served = jobs["ftjob-cli"].config, jobs["ftjob-served"].config
        assert isinstance(cli, TrainConfig) and (cli.seed, cli.max_steps, cli.lora_r) == (7, 2, 8)
        assert cli.method == "supervised"  # a field added since, at its default
        assert isinstance(served, TrainConfig) and served.max_steps == 3
        cloud = jobs["ftjob-cloud"].config
        assert isinstance(cloud, CloudJob) and cloud.hyperparameters.n_epochs == 3
        assert cloud.local_files.training_file == "/data/train.jsonl"
        assert cloud.estimated_cost["training_cost"] == 0.12
        assert jobs["ftjob-seen"].config == CloudJob()
        imported = jobs["ftjob-imported"].config
        assert isinstance(imported, ImportedJob) and imported.hyperparameters is None
        assert imported.migrate.pulled["file-t"].bytes == 10
        assert imported.migrate.held_out.val_file == "/h/v.jsonl"
        assert imported.migrate.checks["file-t"].warnings == 1
        assert imported.local_files.training_file == "/blobs/ab.jsonl"
        ours = jobs["ftjob-ours-inventoried"].config
        assert isinstance(ours, ImportedJob) and ours.hyperparameters.n_epochs == 3
        assert jobs["ftjob-bare"].config is None
        assert [source(jobs[job_id]) for job_id in ("ftjob-cli", "ftjob-served",
                                                    "ftjob-imported", "ftjob-cloud")] == [
            "cli", "server", "imported", "cli"]
    with sqlite3.connect(tunelab_home / "registry.sqlite") as conn:  # no JSON was rewritten
        kept = dict(conn.execute("SELECT id, config_json FROM jobs").fetchall())
    conn.close()
    assert kept == {job_id: config for job_id, (_, _, config) in OLD_ROWS.items()}
    shown = cli_json(capsys, "jobs", "show", "ftjob-imported")
    assert shown["kind"] == "imported" and shown["config"]["migrate"]["shutdown"] == "2027-01-14"


# the real upgrade, from a home the old code wrote ------------------------------------------
OLD_HOME_SCRIPT = textwrap.dedent('''
    """Run by the old code: a local run stopped at its first checkpoint, and a queued server
    job with its uploaded file. Prints what it made as one JSON line."""
    import json
    import sys
    import threading
    from pathlib import Path

    from fastapi.testclient import TestClient

    from tunelab.config import validate_config
    from tunelab.local import api
    from tunelab.server import ServeSettings, create_app

    train, model = Path(sys.argv[1]), sys.argv[2]
    config = validate_config({
        "train_file": str(train), "max_steps": 2, "max_length": 64, "batch_size": 2,
        "save_every": 1, "log_every": 1, "precision": "fp32", "seed": 7, "lora_r": 8,
        "max_samples": 0, "suffix": "old"})
    stop = threading.Event()

    def on_event(event):
        if event.get("type") == "step":  # stop after the first step: checkpoint, cancelled
            stop.set()

    run = api.train(config, on_event=on_event, stop=stop)
    with TestClient(create_app(ServeSettings(run_worker=False))) as client:
        uploaded = client.post("/v1/files", data={"purpose": "fine-tune"},
                               files={"file": ("train.jsonl", train.read_bytes())}).json()
        job = client.post("/v1/fine_tuning/jobs", json={
            "model": model, "training_file": uploaded["id"], "suffix": "served",
            "metadata": {"team": "coach"}}).json()
    print(json.dumps({"run": run, "file": uploaded, "job": job, "code": api.__file__}))
''')


def old_source(target: Path) -> Path:
    """The old commit's src/ folder, extracted with git archive; skips if it is not here."""
    if shutil.which("git") is None or subprocess.run(
            ["git", "-C", str(REPO), "cat-file", "-e", f"{OLD_COMMIT}^{{commit}}"],
            capture_output=True).returncode != 0:
        pytest.skip(f"commit {OLD_COMMIT} (the code that wrote old homes) is not in this clone")
    target.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", OLD_COMMIT, "src"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target / "src"


@pytest.mark.slow
def test_a_home_written_by_the_old_code_opens_lists_shows_and_resumes(
        tmp_path: Path, tunelab_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = old_source(tmp_path / "old")
    script = tmp_path / "old_home.py"
    script.write_text(OLD_HOME_SCRIPT, encoding="utf-8")
    train = dialogues(tmp_path / "train.jsonl")
    made = subprocess.run([sys.executable, str(script), str(train), MODEL],
                          env={**os.environ, "PYTHONPATH": str(src)}, cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert made.returncode == 0, made.stderr[-3000:]
    old = json.loads(made.stdout.strip().splitlines()[-1])
    assert old["code"].startswith(str(src))  # the old code wrote this home, not today's
    run_id, job_id, file_id = old["run"]["id"], old["job"]["id"], old["file"]["id"]
    assert old["run"]["status"] == "cancelled" and old["run"]["resumable"]
    assert (tunelab_home / "server" / "jobs" / f"{job_id}.json").is_file()  # the old store

    listed = [job["id"] for job in cli_json(capsys, "jobs", "list")["jobs"]]
    assert listed == [job_id, run_id]
    shown = cli_json(capsys, "jobs", "show", run_id)
    assert shown["status"] == "cancelled" and shown["run_dir"]
    assert shown["kind"] == "local" and shown["config"]["seed"] == 7  # migration 4
    served = cli_json(capsys, "jobs", "show", job_id)
    assert (served["provider"], served["origin"], served["status"]) == ("local", SERVER,
                                                                        "queued")
    resumed = cli_json(capsys, "train", "--resume", run_id)
    assert resumed["status"] == "succeeded" and resumed["metrics"]["steps"] == 2
    with open_registry() as registry:
        rows = registry.list_metrics(run_id)
    assert [row["step"] for row in rows] == [1, 2]
    assert all("train_loss" in row and "loss" not in row for row in rows)  # migration 2

    with serve_in_thread(create_app(ServeSettings(run_worker=False))) as port:
        client = openai.OpenAI(api_key="unused", base_url=f"http://127.0.0.1:{port}/v1")
        assert [f.id for f in client.files.list().data] == [file_id]
        assert client.files.content(file_id).content == train.read_bytes()
        assert [j.id for j in client.fine_tuning.jobs.list().data] == [job_id]
        job = client.fine_tuning.jobs.retrieve(job_id)
        assert job.metadata == {"team": "coach"} and job.training_file == file_id
        assert job.user_provided_suffix == "served" and job.status == "queued"
        events = [e.message for e in client.fine_tuning.jobs.list_events(job_id).data]
        assert events[-1] == f"Created fine-tuning job: {job_id}"
        assert [j.id for j in client.fine_tuning.jobs.list(
            metadata={"team": "coach"}).data] == [job_id]
