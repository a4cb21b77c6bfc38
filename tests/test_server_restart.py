"""The server's job queue survives a restart: queued jobs stay queued (the worker runs them
like any new job, see test_openai_e2e.py), and a running job pauses at a checkpoint when the
server stops and resumes from it when the server starts again."""

from __future__ import annotations

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
    registry = open_registry()
    assert registry.list_checkpoints(job.id)
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
    steps = [row["step"] for row in registry.list_metrics(job.id)]
    assert steps == sorted(set(steps)) and steps[-1] == SETTINGS.max_steps
