"""The server's job queue (the registry) survives a restart: queued jobs stay queued (the
worker runs them like any new job, see test_openai_e2e.py), and a running job pauses at a
checkpoint when the server stops and resumes from it when the server starts again. A bad
record fails alone: the worker goes on to the next job."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import openai
import pytest

from faultproxy import dialogues, serve_in_thread
from tunelab.registry import open_registry
from tunelab.server import ServeSettings, create_app

TERMINAL = ("succeeded", "failed", "cancelled")
MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
SETTINGS = ServeSettings(max_steps=4, max_length=64)



def wait_for(predicate, timeout: float = 900.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.2)


def client_for(port: int) -> openai.OpenAI:
    return openai.OpenAI(api_key="unused", base_url=f"http://127.0.0.1:{port}/v1")


def test_a_queued_job_outlives_a_stopped_server(tmp_path: Path) -> None:
    idle = ServeSettings(run_worker=False)
    with serve_in_thread(create_app(idle)) as port:
        client = client_for(port)
        training = client.files.create(file=dialogues(tmp_path / "t.jsonl").open("rb"),
                                       purpose="fine-tune")
        first = client.fine_tuning.jobs.create(model=MODEL, training_file=training.id)
        second = client.fine_tuning.jobs.create(model=MODEL, training_file=training.id)
    with serve_in_thread(create_app(idle)) as port:
        client = client_for(port)
        assert [job.id for job in client.fine_tuning.jobs.list()] == [second.id, first.id]
        assert {job.status for job in client.fine_tuning.jobs.list()} == {"queued"}
        assert client.files.retrieve(training.id).bytes == training.bytes


def test_a_bad_record_fails_alone_and_the_worker_goes_on(tmp_path: Path,
                                                         tunelab_home: Path) -> None:
    with serve_in_thread(create_app(ServeSettings(run_worker=False))) as port:
        client = client_for(port)
        training = client.files.create(file=dialogues(tmp_path / "t.jsonl").open("rb"),
                                       purpose="fine-tune")
        unreadable = client.fine_tuning.jobs.create(model=MODEL, training_file=training.id)
        orphaned = client.fine_tuning.jobs.create(model=MODEL, training_file=training.id)
        client.files.delete(training.id)  # the queued job's data is gone
    with sqlite3.connect(tunelab_home / "registry.sqlite") as conn:  # a torn row
        conn.execute("UPDATE jobs SET config_json = '{' WHERE id = ?", (unreadable.id,))

    def status_of(job_id: str) -> str:
        with sqlite3.connect(tunelab_home / "registry.sqlite") as conn:
            return conn.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()[0]

    app = create_app(SETTINGS)
    with serve_in_thread(app) as port:
        wait_for(lambda: status_of(orphaned.id) in TERMINAL, timeout=300)
        failed = client_for(port).fine_tuning.jobs.retrieve(orphaned.id)
        assert app.state.worker.is_alive()
    assert status_of(unreadable.id) == "failed"
    assert failed.status == "failed" and failed.error.code == "training_failed"
    assert training.id in failed.error.message and str(tunelab_home) not in str(failed.error)


@pytest.mark.slow
def test_restart_resumes_the_running_job_from_its_checkpoint(tmp_path: Path) -> None:
    path = dialogues(tmp_path / "train.jsonl")
    with serve_in_thread(create_app(SETTINGS)) as port:
        client = client_for(port)
        training = client.files.create(file=path.open("rb"), purpose="fine-tune")
        job = client.fine_tuning.jobs.create(model=MODEL, training_file=training.id,
                                             suffix="first")

        def training_started() -> bool:
            return any(event.type == "metrics"
                       for event in client.fine_tuning.jobs.list_events(job.id))

        wait_for(training_started)
    # The server is down: the job paused at a checkpoint and stays `running` in the queue.
    with open_registry() as registry:
        assert registry.list_checkpoints(job.id)
        assert registry.get_job(job.id).status == "running"
    with serve_in_thread(create_app(SETTINGS)) as port:
        client = client_for(port)

        def finished() -> bool:
            return client.fine_tuning.jobs.retrieve(job.id).status in TERMINAL

        wait_for(finished)
        done = client.fine_tuning.jobs.retrieve(job.id)
        assert done.status == "succeeded", done.error
        events = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=100)]
        assert any("Resuming" in message for message in events)
        assert done.fine_tuned_model.endswith(f":first:{job.id}")
        assert done.fine_tuned_model in [model.id for model in client.models.list()]
        assert done.trained_tokens and done.trained_tokens > 0
        metric_events = [event.data for event in client.fine_tuning.jobs.list_events(
            job.id, limit=100) if event.type == "metrics"]
    with open_registry() as registry:
        steps = [row["step"] for row in registry.list_metrics(job.id)]
        assert registry.get_job(job.id).metrics["trained_tokens"] == done.trained_tokens
    assert steps == sorted(set(steps)) and steps[-1] == SETTINGS.max_steps
    assert metric_events and all("train_loss" in data for data in metric_events)
    assert {"step", "train_loss", "train_mean_token_accuracy"} <= set(metric_events[0])
