"""`tunelab serve` through the official openai SDK: files, jobs, events, models, errors, auth.

These run the real app under uvicorn on a loopback port, with the job worker off so jobs stay
queued (training is covered by test_openai_e2e.py).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import openai
import pytest

from faultproxy import dialogues, serve_in_thread
from openai_double import jsonl, preference
from tunelab.cli import main
from tunelab.registry import SERVER, JobRecord, open_registry
from tunelab.server import ServeSettings, create_app
from tunelab.server.settings import check_bind

KEY = "test-server-key-7f3a"
MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"



@pytest.fixture
def server(tunelab_home: Path):
    settings = ServeSettings(api_key=KEY, run_worker=False, max_upload_bytes=64 * 1024)
    with serve_in_thread(create_app(settings)) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def client(server: str) -> openai.OpenAI:
    return openai.OpenAI(api_key=KEY, base_url=server + "/v1", max_retries=0)


def error_of(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"}
    assert {"message", "type", "param", "code"} <= set(body["error"])
    return body["error"]


def test_files_round_trip(client: openai.OpenAI, tmp_path: Path) -> None:
    path = dialogues(tmp_path / "train.jsonl")
    uploaded = client.files.create(file=path.open("rb"), purpose="fine-tune")
    assert uploaded.id.startswith("file-") and uploaded.bytes == path.stat().st_size
    assert uploaded.filename == "train.jsonl" and uploaded.purpose == "fine-tune"
    assert [f.id for f in client.files.list(purpose="fine-tune")] == [uploaded.id]
    assert client.files.retrieve(uploaded.id).bytes == uploaded.bytes
    assert client.files.content(uploaded.id).content == path.read_bytes()
    assert client.files.delete(uploaded.id).deleted is True
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(uploaded.id)


def test_upload_name_is_never_a_path(client: openai.OpenAI, tmp_path: Path,
                                     tunelab_home: Path) -> None:
    path = dialogues(tmp_path / "train.jsonl")
    evil = "../../../escaped.jsonl"
    uploaded = client.files.create(file=(evil, path.read_bytes()), purpose="fine-tune")
    assert uploaded.filename == evil  # echoed back as metadata, as OpenAI does
    assert not list(tmp_path.rglob("escaped.jsonl"))
    stored = list((tunelab_home / "server" / "files").iterdir())
    assert {p.name for p in stored} == {f"{uploaded.id}.jsonl"}  # the metadata is a row
    with open_registry() as registry:
        assert registry.find_file(SERVER, uploaded.id).filename == evil


def test_upload_size_limit(server: str, client: openai.OpenAI, tmp_path: Path) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        client.files.create(file=("big.jsonl", b"x" * 200_000), purpose="fine-tune")
    assert caught.value.status_code == 413
    assert client.files.list().data == []


def test_auth_is_enforced_everywhere_but_health(server: str) -> None:
    assert httpx.get(server + "/health").json() == {"status": "ok"}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        response = httpx.get(server + "/v1/models", headers=headers)
        assert response.status_code == 401
        assert error_of(response)["code"] == "invalid_api_key"
        assert KEY not in response.text
    response = httpx.post(server + "/v1/fine_tuning/jobs", json={})
    assert response.status_code == 401
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(api_key="nope", base_url=server + "/v1", max_retries=0).models.list()


def test_bad_requests_get_openai_shaped_4xx(server: str, client: openai.OpenAI) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    cases = [
        ("POST", "/v1/fine_tuning/jobs", {"content": b"{not json"}, 400),
        ("POST", "/v1/fine_tuning/jobs", {"json": {"model": MODEL}}, 400),
        ("POST", "/v1/fine_tuning/jobs",
         {"json": {"model": MODEL, "training_file": "file-0", "bogus": 1}}, 400),
        ("POST", "/v1/fine_tuning/jobs",
         {"json": {"model": MODEL, "training_file": "file-000000000000000000000000"}}, 400),
        ("POST", "/v1/files", {"files": {"file": ("a.jsonl", b"{}")}, "data": {}}, 400),
        ("POST", "/v1/files", {"files": {"file": ("a.jsonl", b"{}")},
                               "data": {"purpose": "mystery"}}, 400),
        ("GET", "/v1/files/../../etc/passwd", {}, 404),
        ("GET", "/v1/fine_tuning/jobs/ftjob-missing", {}, 404),
        # ids longer than a file name may be (issue 13): a 404, never a 500
        ("GET", "/v1/fine_tuning/jobs/ftjob-" + "x" * 300, {}, 404),
        ("GET", "/v1/fine_tuning/jobs/ftjob-" + "x" * 300 + "/events", {}, 404),
        ("GET", "/v1/fine_tuning/jobs/ftjob-" + "x" * 300 + "/checkpoints", {}, 404),
        ("POST", "/v1/fine_tuning/jobs/ftjob-" + "x" * 300 + "/cancel", {}, 404),
        ("GET", "/v1/files/file-" + "x" * 300, {}, 404),
        ("GET", "/v1/files/file-" + "x" * 300 + "/content", {}, 404),
        ("DELETE", "/v1/files/file-" + "x" * 300, {}, 404),
        ("GET", "/v1/nothing-here", {}, 404),
        ("DELETE", "/v1/models", {}, 405),
        ("POST", "/v1/chat/completions", {"json": {"model": MODEL, "messages": []}}, 400),
        ("POST", "/v1/chat/completions", {"json": {"model": MODEL, "messages": [], "n": 3}},
         400),
    ]
    for method, path, extra, status in cases:
        response = httpx.request(method, server + path, headers=auth, **extra)
        assert response.status_code == status, (method, path, response.text)
        assert error_of(response)["message"]


def test_job_lifecycle_while_queued(client: openai.OpenAI, tmp_path: Path) -> None:
    training = client.files.create(file=dialogues(tmp_path / "t.jsonl").open("rb"),
                                   purpose="fine-tune")
    job = client.fine_tuning.jobs.create(
        model=MODEL, training_file=training.id, suffix="natasha-v1", seed=7,
        metadata={"team": "coach"},
        method={"type": "supervised",
                "supervised": {"hyperparameters": {"n_epochs": 2, "batch_size": 4,
                                                   "learning_rate_multiplier": 0.5}}})
    assert job.status == "queued" and job.object == "fine_tuning.job"
    assert job.hyperparameters.n_epochs == 2 and job.hyperparameters.batch_size == 4
    assert job.method.type == "supervised" and job.seed == 7
    assert client.fine_tuning.jobs.retrieve(job.id).training_file == training.id
    assert [j.id for j in client.fine_tuning.jobs.list(metadata={"team": "coach"})] == [job.id]
    assert client.fine_tuning.jobs.list(metadata={"team": "other"}).data == []
    messages = [event.message for event in client.fine_tuning.jobs.list_events(job.id)]
    assert messages[-1].startswith("Created fine-tuning job")  # newest first, like OpenAI
    assert client.fine_tuning.jobs.cancel(job.id).status == "cancelled"
    with pytest.raises(openai.BadRequestError):
        client.fine_tuning.jobs.cancel(job.id)
    assert client.fine_tuning.jobs.checkpoints.list(job.id).data == []


def test_a_dpo_job_is_queued_with_its_method_and_beta(client: openai.OpenAI,
                                                      tmp_path: Path) -> None:
    prefs = tmp_path / "prefs.jsonl"
    prefs.write_bytes(jsonl([preference(n) for n in range(6)]))
    training = client.files.create(file=prefs.open("rb"), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(
        model=MODEL, training_file=training.id,
        method={"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.3, "n_epochs": 2}}})
    # shown as OpenAI shows a DPO job: beta under method.dpo, not among the legacy ones
    assert job.method.type == "dpo" and job.method.supervised is None
    assert (job.method.dpo.hyperparameters.beta, job.method.dpo.hyperparameters.n_epochs) \
        == (0.3, 2)
    assert client.fine_tuning.jobs.retrieve(job.id).method.type == "dpo"
    assert "beta" not in client.fine_tuning.jobs.retrieve(job.id).hyperparameters.to_dict()
    with open_registry() as registry:  # what the worker will train: local DPO, beta 0.3
        config = registry.get_job(job.id).config
    assert (config.method, config.beta, config.epochs) == ("dpo", 0.3, 2)
    # chat examples are no preference pairs; an unknown method is OpenAI's 400 naming it
    chat = client.files.create(file=dialogues(tmp_path / "chat.jsonl").open("rb"),
                               purpose="fine-tune")
    with pytest.raises(openai.BadRequestError) as caught:
        client.fine_tuning.jobs.create(model=MODEL, training_file=chat.id,
                                       method={"type": "dpo"})
    assert caught.value.body["param"] == "training_file" and "line 1" in caught.value.message
    with pytest.raises(openai.BadRequestError) as caught:
        client.fine_tuning.jobs.create(model=MODEL, training_file=training.id,
                                       method={"type": "reinforcement"})
    assert caught.value.body["param"] == "method.type"
    assert "'supervised' or 'dpo'" in caught.value.message
    assert [j.id for j in client.fine_tuning.jobs.list()] == [job.id]


def cli_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    capsys.readouterr()
    assert main([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_a_served_job_is_the_row_the_cli_shows(client: openai.OpenAI, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    training = client.files.create(file=dialogues(tmp_path / "t.jsonl").open("rb"),
                                   purpose="fine-tune")
    first = client.fine_tuning.jobs.create(model=MODEL, training_file=training.id)
    job = client.fine_tuning.jobs.create(model=MODEL, training_file=training.id, seed=3)
    shown = cli_json(capsys, "jobs", "show", job.id)
    assert (shown["provider"], shown["status"], shown["origin"]) == ("local", "queued", "server")
    assert shown["training_file"] == training.id and shown["seq"] == job_seq(first.id) + 1
    assert client.fine_tuning.jobs.cancel(job.id).status == "cancelled"
    assert cli_json(capsys, "jobs", "show", job.id)["status"] == "cancelled"
    cli_events = [event["message"] for event in cli_json(capsys, "jobs", "events",
                                                          job.id)["events"]]
    api_events = [event.message for event in client.fine_tuning.jobs.list_events(job.id)]
    assert cli_events == api_events[::-1]  # one list: oldest first there, newest first here
    assert cli_events[0].startswith("Created fine-tuning job")
    assert cli_events[-1] == "Cancellation requested before the job started"
    page_one = client.fine_tuning.jobs.list(limit=1)
    assert [j.id for j in page_one.data] == [job.id] and page_one.has_more
    after = client.fine_tuning.jobs.list(after=job.id, limit=5)
    assert [j.id for j in after.data] == [first.id] and not after.has_more


def job_seq(job_id: str) -> int:
    with open_registry() as registry:
        return registry.get_job(job_id).seq


def test_a_cli_run_is_not_served(client: openai.OpenAI) -> None:
    with open_registry() as registry:
        registry.create_job(JobRecord(id="ftjob-cli", provider="local", status="succeeded",
                                      created_at=1.0, updated_at=1.0,
                                      training_file="/home/me/private.jsonl"))
    assert client.fine_tuning.jobs.list().data == []
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.retrieve("ftjob-cli")


def test_invalid_training_data_is_refused_with_the_line(client: openai.OpenAI,
                                                        tmp_path: Path) -> None:
    path = dialogues(tmp_path / "t.jsonl")
    path.write_text(path.read_text() + "{broken\n")
    bad = client.files.create(file=path.open("rb"), purpose="fine-tune")
    with pytest.raises(openai.BadRequestError) as caught:
        client.fine_tuning.jobs.create(model=MODEL, training_file=bad.id)
    assert "line 13" in str(caught.value)
    assert str(tmp_path) not in str(caught.value)


def test_models_lists_the_embedded_model(client: openai.OpenAI) -> None:
    assert MODEL in [model.id for model in client.models.list()]
    assert client.models.retrieve(MODEL).owned_by == "tunelab"


def test_non_loopback_bind_needs_a_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--host", "0.0.0.0", "--port", "0"]) == 2
    assert "--api-key" in capsys.readouterr().err
    check_bind(ServeSettings(host="0.0.0.0", api_key="k"))  # a key makes it allowed
    check_bind(ServeSettings(host="::1"))  # loopback needs none


def test_serve_help_says_a_command_line_key_shows_in_ps(
        capsys: pytest.CaptureFixture[str]) -> None:
    main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "TUNELAB_SERVE_API_KEY" in text and "ps" in text.split("command line")[1][:80]


@pytest.mark.slow
def test_chat_with_the_base_model_plain_and_streamed(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "Say hello."}]
    answer = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=8,
                                            temperature=0)
    text = answer.choices[0].message.content
    assert text and answer.usage.completion_tokens <= 8
    stream = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=8,
                                            temperature=0, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text  # greedy: the same answer either way
    assert chunks[-1].usage.completion_tokens == answer.usage.completion_tokens
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=messages)


@pytest.mark.slow
def test_a_failed_job_says_why_in_the_client_terms(tunelab_home: Path, tmp_path: Path) -> None:
    settings = ServeSettings(api_key=KEY, max_length=16)  # too short for any answer
    with serve_in_thread(create_app(settings)) as port:
        client = openai.OpenAI(api_key=KEY, base_url=f"http://127.0.0.1:{port}/v1")
        training = client.files.create(file=dialogues(tmp_path / "t.jsonl").open("rb"),
                                       purpose="fine-tune")
        job = client.fine_tuning.jobs.create(model=MODEL, training_file=training.id)
        deadline = time.monotonic() + 600
        while client.fine_tuning.jobs.retrieve(job.id).status not in ("failed", "succeeded"):
            assert time.monotonic() < deadline
            time.sleep(0.3)
        failed = client.fine_tuning.jobs.retrieve(job.id)
        events = [event.message for event in client.fine_tuning.jobs.list_events(job.id)]
    assert failed.status == "failed" and failed.error.code == "training_failed"
    assert training.id in failed.error.message and "max-length" in failed.error.message
    assert str(tunelab_home) not in failed.error.message + " ".join(events)
