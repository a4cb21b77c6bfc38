"""The server's job queue survives a restart: a running job pauses at a checkpoint when the
server stops and resumes when it starts again; a queued job still runs after it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import openai
import pytest

from faultproxy import serve_in_thread
from tunelab.registry import open_registry
from tunelab.server import ServeSettings, create_app

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
SETTINGS = ServeSettings(max_steps=4, max_length=64)


def dialogues(path: Path, count: int = 12) -> Path:
    lines = [json.dumps({"messages": [
        {"role": "user", "content": f"Tell me about step {number}."},
        {"role": "assistant", "content": f"Step {number} is a small, brave move."}]})
        for number in range(count)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def wait_for(predicate, timeout: float = 900.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.2)


def client_for(port: int) -> openai.OpenAI:
    return openai.OpenAI(api_key="unused", base_url=f"http://127.0.0.1:{port}/v1")


@pytest.mark.slow
def test_restart_resumes_the_running_job_and_runs_the_queued_one(tmp_path: Path) -> None:
    path = dialogues(tmp_path / "train.jsonl")
    with serve_in_thread(create_app(SETTINGS)) as port:
        client = client_for(port)
        training = client.files.create(file=path.open("rb"), purpose="fine-tune")
        first = client.fine_tuning.jobs.create(model=MODEL, training_file=training.id,
                                               suffix="first")
        second = client.fine_tuning.jobs.create(model=MODEL, training_file=training.id,
                                                suffix="second")

        def first_is_training() -> bool:
            return any(event.type == "metrics"
                       for event in client.fine_tuning.jobs.list_events(first.id))

        wait_for(first_is_training)
    # The server is down: the first job paused at a checkpoint, the second never started.
    registry = open_registry()
    assert registry.list_checkpoints(first.id)
    assert registry.find_job(second.id) is None
    with serve_in_thread(create_app(SETTINGS)) as port:
        client = client_for(port)
        assert client.fine_tuning.jobs.retrieve(second.id).status == "queued"

        def both_done() -> bool:
            return all(client.fine_tuning.jobs.retrieve(job.id).status
                       in ("succeeded", "failed", "cancelled") for job in (first, second))

        wait_for(both_done)
        done = [client.fine_tuning.jobs.retrieve(job.id) for job in (first, second)]
        assert [job.status for job in done] == ["succeeded", "succeeded"], done
        events = [e.message for e in client.fine_tuning.jobs.list_events(first.id, limit=100)]
        assert any("Resuming" in message for message in events)
        assert done[1].finished_at >= done[0].finished_at  # one at a time, in order
        assert done[0].fine_tuned_model.endswith(f":first:{first.id}")
        models = [model.id for model in client.models.list()]
        assert done[0].fine_tuned_model in models and done[1].fine_tuned_model in models
    assert [row["step"] for row in registry.list_metrics(first.id)][-1] == 4
