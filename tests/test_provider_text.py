"""What a provider says reaches the user and the registry only scrubbed of keys, and a
provider that cannot be reached is retried in view, within --timeout.

Both run the real CLI (`tunelab.cli.main`) against real HTTP through the official openai SDK:
a FastAPI stand-in that echoes the key everywhere it can, and a port nobody listens on.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from faultproxy import dialogues, serve_in_thread
from tunelab.cli import main
from tunelab.providers.sdk_errors import scrub_json

# The configured key is not shaped like an OpenAI key, so only knowing it scrubs it; the
# others are key-shaped strings that are not the configured key.
KEY = "tl-canary-7f3a9c2e5b1d4e6f"
OTHERS = ("sk-proj-OTHERsecret123456", "ya29.a0AfH6SMotherToken", "Bearer eyJhbGciOiJIUzI1",
          "AIzaSyA1234567890abcdefghijklmno")
SECRETS = (KEY, "sk-proj-OTHER", "ya29.a0AfH6", "eyJhbGciOiJIUzI1", "AIzaSyA123456")
JOB = "ftjob-leaky"
MODEL = "gpt-4o-mini-2024-07-18"


def leaky_app() -> FastAPI:
    """An OpenAI stand-in whose failed job, events, checkpoints and errors all echo keys."""
    app = FastAPI()
    job = {"object": "fine_tuning.job", "id": JOB, "created_at": 1, "model": MODEL,
           "status": "failed", "finished_at": 2, "fine_tuned_model": None,
           "error": {"code": f"E-{KEY}", "param": OTHERS[0],
                     "message": f"key {KEY} was refused ({OTHERS[2]})"},
           "hyperparameters": {}, "organization_id": f"org-{KEY}", "result_files": [],
           "seed": 1, "training_file": "file-1", "metadata": {"note": OTHERS[1]}}

    @app.get("/v1/fine_tuning/jobs")
    def jobs() -> dict:
        return {"object": "list", "data": [job], "has_more": False}

    @app.get("/v1/fine_tuning/jobs/{job_id}")
    def one(job_id: str):
        if job_id == JOB:
            return job
        return JSONResponse({"error": {  # the example of issue 13: a key inside the code
            "code": f"E-{OTHERS[0]}", "param": KEY, "type": "invalid_request_error",
            "message": f"no job for {KEY}; {OTHERS[3]}"}}, status_code=400)

    @app.get("/v1/fine_tuning/jobs/{job_id}/events")
    def events(job_id: str) -> dict:
        return {"object": "list", "has_more": False, "data": [  # newest first
            {"object": "fine_tuning.job.event", "id": "ftevent-2", "created_at": 2,
             "level": "error", "type": "message", "message": f"failed: {KEY} {OTHERS[2]}",
             "data": {"detail": KEY, KEY: [OTHERS[1], {"deep": OTHERS[3]}]}},
            {"object": "fine_tuning.job.event", "id": "ftevent-1", "created_at": 1,
             "level": "info", "type": "metrics", "message": f"Step 1/2: {OTHERS[0]}",
             "data": {"step": 1, "train_loss": 0.5, "total_steps": 2, "note": KEY}}]}

    @app.get("/v1/fine_tuning/jobs/{job_id}/checkpoints")
    def checkpoints(job_id: str) -> dict:
        return {"object": "list", "has_more": False, "data": [
            {"object": "fine_tuning.job.checkpoint", "id": "ftckpt-1", "created_at": 3,
             "fine_tuned_model_checkpoint": f"ft:{MODEL}:{KEY}:ckpt-step-1",
             "fine_tuning_job_id": JOB, "step_number": 1,
             "metrics": {"step": 1, "train_loss": 0.5}}]}

    return app


def assert_clean(text: str | bytes, where: str) -> None:
    data = text.encode() if isinstance(text, str) else text
    for secret in SECRETS:
        assert secret.encode() not in data, f"{secret!r} leaked into {where}"


@pytest.fixture(autouse=True)
def made_home(tunelab_home: Path) -> None:
    tunelab_home.mkdir(parents=True, exist_ok=True)  # these tests are not about creating it


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert_clean(captured.out + captured.err, f"the output of {' '.join(argv[:2])}")
    return code, captured.out, captured.err


def test_provider_text_is_scrubbed_before_it_is_stored_or_shown(
        tunelab_home: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with serve_in_thread(leaky_app()) as port:
        remote = ["--provider", "openai", "--base-url", f"http://127.0.0.1:{port}/v1"]
        code, out, err = run(capsys, "jobs", "watch", JOB, *remote, "--interval", "2", "--json")
        assert code == 1 and "[E-***] key *** was refused (***)" in err
        assert json.loads(out)["error"]["param"] == "***"

        code, out, _ = run(capsys, "jobs", "show", JOB, "--json")
        assert code == 0 and json.loads(out)["error"]["code"] == "E-***"
        assert run(capsys, "jobs", "show", JOB)[0] == 0
        code, out, _ = run(capsys, "jobs", "list", "--json")
        assert [job["error"]["code"] for job in json.loads(out)["jobs"]] == ["E-***"]
        assert run(capsys, "jobs", "list", *remote, "--json")[0] == 0

        code, out, _ = run(capsys, "jobs", "events", JOB, "--json")
        events = json.loads(out)["events"]
        assert [event["message"] for event in events] == ["Step 1/2: ***", "failed: *** ***"]
        assert events[1]["data"] == {"detail": "***", "***": ["***", {"deep": "***"}]}
        code, out, _ = run(capsys, "jobs", "checkpoints", JOB, "--json")
        assert json.loads(out)["checkpoints"][0]["model"] == f"ft:{MODEL}:***:ckpt-step-1"

        # A refused call: the key hides in the code, the param and the message.
        code, _, err = run(capsys, "jobs", "cancel", "ftjob-other", *remote)
        assert code == 1 and "[E-***] openai: no job for ***; *** (param: ***)" in err

    for path in tunelab_home.rglob("*"):  # the registry (and its WAL), logs, run folders
        if path.is_file():
            assert_clean(path.read_bytes(), str(path))


def test_scrub_json_reaches_every_string_and_keeps_the_rest() -> None:
    value = {"n": 1, "ok": True, "none": None, KEY: (f"a {KEY}", [OTHERS[0], 2.5])}
    assert scrub_json(value, KEY) == {"n": 1, "ok": True, "none": None,
                                      "***": ["a ***", ["***", 2.5]]}


def test_a_vertex_job_is_scrubbed_where_it_becomes_a_job() -> None:
    from google.genai import types

    from tunelab.providers.vertex_jobs import events_from_job, job_from_sdk

    token = OTHERS[1]  # Vertex has no key: an OAuth token is what an answer can echo
    job = job_from_sdk(types.TuningJob(
        name="projects/p/locations/l/tuningJobs/1", state="JOB_STATE_FAILED",
        base_model="gemini-2.5-flash", tuned_model_display_name=f"run {token}",
        error=types.GoogleRpcStatus(code=3, message=f"refused: Bearer {token}",
                                    details=[{"token": token}])))
    assert job.status == "failed" and job.suffix == "run ***"
    assert job.error == {"code": 3, "message": "refused: ***", "details": [{"token": "***"}]}
    assert events_from_job(job)[-1].message == "tuning failed: refused: ***"
    assert token not in json.dumps(job.raw)


def free_port() -> int:
    with socket.socket() as probe:  # bound, then closed: nothing listens there
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("command", [["train", "{file}", "--yes"],
                                     ["jobs", "list", "--json"]])
def test_an_unreachable_provider_shows_each_retry_and_stops_at_the_timeout(
        command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    file = str(dialogues(tmp_path / "train.jsonl"))
    argv = [part.format(file=file) for part in command]
    code, out, err = run(capsys, *argv, "--provider", "openai", "--base-url",
                         f"http://127.0.0.1:{free_port()}/v1", "--timeout", "3")
    lines = err.strip().splitlines()
    retries = [line for line in lines if "retrying in" in line]
    assert code == 1 and out == ""
    assert retries and "cannot reach openai" in retries[0] and "(attempt 1 of " in retries[0]
    assert lines[-1].startswith("error: [connection_error] cannot reach openai")
    assert sum(line.startswith("error:") for line in lines) == 1
