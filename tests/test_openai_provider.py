"""The OpenAI-compatible provider: profiles, keys, error wrapping, and exactly-once creates
through a fault-injecting proxy in front of a real `tunelab serve` app (job worker off)."""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from faultproxy import FaultPlan, FaultProxy, dialogues, serve_in_thread
from tunelab.cli import cloud_cmd
from tunelab.cli.train_options import CloudOptions, TrainOptions
from tunelab.cli.train_run import run_train
from tunelab.errors import AuthError, ProviderError, UsageError
from tunelab.providers import cloud_training, get_provider
from tunelab.providers.base import JobSpec
from tunelab.providers.openai_compat import OpenAICompatProvider
from tunelab.providers.profiles import find_profile
from tunelab.registry import open_registry
from tunelab.server import ServeSettings, create_app

KEY = "sk-canary-provider-0123456789"
MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"



@pytest.fixture
def server(tunelab_home: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with serve_in_thread(create_app(ServeSettings(api_key=KEY, run_worker=False))) as port:
        yield port


def direct(port: int) -> openai.OpenAI:
    return openai.OpenAI(api_key=KEY, base_url=f"http://127.0.0.1:{port}/v1")


# profiles and keys -------------------------------------------------------------------------
def test_missing_key_names_the_variable_and_the_fix() -> None:
    with pytest.raises(AuthError) as caught:
        get_provider("openai")
    assert "OPENAI_API_KEY" in caught.value.render() and ".env" in caught.value.render()
    with pytest.raises(AuthError) as caught:
        get_provider("kimi")
    assert "MOONSHOT_API_KEY or KIMI_API_KEY" in caught.value.render()


def test_key_from_dotenv_in_home(tunelab_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tunelab_home.mkdir(parents=True, exist_ok=True)
    (tunelab_home / ".env").write_text("KIMI_API_KEY=from-dotenv\n")
    monkeypatch.delenv("KIMI_API_KEY", raising=False)
    provider = get_provider("kimi")
    assert provider.base_url == "https://api.moonshot.ai/v1"
    assert "from-dotenv" not in repr(provider)
    monkeypatch.delenv("KIMI_API_KEY", raising=False)  # load_dotenv set it for this process


def test_endpoints_are_data_in_providers_yaml(tunelab_home: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    tunelab_home.mkdir(parents=True, exist_ok=True)
    (tunelab_home / "providers.yaml").write_text(
        "kimi:\n  region: cn\n"
        "mylab:\n  base_url: http://10.1.2.3:8000/v1/\n  key_env: MYLAB_KEY\n"
        "  capabilities: {fine_tuning: false}\n")
    assert find_profile("kimi").base_url == "https://api.moonshot.cn/v1"
    assert not find_profile("kimi").capabilities.fine_tuning
    monkeypatch.setenv("MYLAB_KEY", "x")
    lab = get_provider("mylab")
    assert lab.base_url == "http://10.1.2.3:8000/v1" and not lab.capabilities.fine_tuning
    (tunelab_home / "providers.yaml").write_text("mylab:\n  key_env: X\n")
    with pytest.raises(UsageError, match="base_url"):
        get_provider("mylab")


def test_kimi_cannot_train_and_says_what_can(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as caught:
        run_train(TrainOptions(file=dialogues(tmp_path / "t.jsonl"),
                               cloud=CloudOptions(provider="kimi")))
    message = caught.value.render()
    assert "no fine-tuning" in message
    assert all(name in message for name in ("openai", "vertex", "local"))


# errors ----------------------------------------------------------------------------------
def test_sdk_errors_keep_code_and_message_but_never_the_key(
        monkeypatch: pytest.MonkeyPatch) -> None:
    app = FastAPI()

    @app.get("/v1/fine_tuning/jobs/{job_id}")
    def refuse(job_id: str) -> JSONResponse:
        status = 401 if job_id == "a" else 400
        return JSONResponse({"error": {
            "message": f"Incorrect API key provided: sk-can***6789. Also {KEY} here.",
            "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}},
            status_code=status)

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with serve_in_thread(app) as port:
        provider = get_provider("openai", base_url=f"http://127.0.0.1:{port}/v1")
        for job_id, kind in (("a", AuthError), ("b", ProviderError)):
            with pytest.raises(kind) as caught:
                provider.get_job(job_id)
            text = caught.value.render()
            assert "invalid_api_key" in text and "Incorrect API key" in text
            assert KEY not in text and "sk-can" not in text


# exactly once ------------------------------------------------------------------------------
def test_lost_answers_and_faults_leave_one_upload_and_one_job(server: int,
                                                              tmp_path: Path) -> None:
    plan = FaultPlan(rate_429=0.15, rate_500=0.1, rate_reset=0.1, seed=3, script={
        # a refused create (nothing made), then one whose answer is lost (job made)
        "POST /v1/files": ["500", "drop_answer"],
        "POST /v1/fine_tuning/jobs": ["reset", "500", "drop_answer"]})
    path = dialogues(tmp_path / "train.jsonl")
    with FaultProxy(server, plan) as proxy:
        provider = get_provider("openai", base_url=f"http://127.0.0.1:{proxy.port}/v1")
        provider._sleep = lambda seconds: None  # our own backoff; the SDK's still runs
        ref = provider.upload(path)
        job = provider.create_job(JobSpec(base_model=MODEL, training_file=ref.id,
                                          suffix="once", epochs=1))
        again = provider.upload(path)
    assert plan.log["drop_answer"] >= 2 and not any(plan.script.values())  # faults happened
    assert again.reused and again.id == ref.id
    client = direct(server)
    assert [f.id for f in client.files.list()] == [ref.id]
    assert [j.id for j in client.fine_tuning.jobs.list()] == [job.id]
    assert client.fine_tuning.jobs.retrieve(job.id).metadata["tunelab_token"]


def test_upload_again_when_the_remote_copy_is_gone(server: int, tmp_path: Path) -> None:
    provider = get_provider("openai", base_url=f"http://127.0.0.1:{server}/v1")
    path = dialogues(tmp_path / "train.jsonl")
    first = provider.upload(path)
    direct(server).files.delete(first.id)
    second = provider.upload(path)
    assert not second.reused and second.id != first.id
    with open_registry() as registry:
        assert registry.files_with_sha(provider.base_url, first.sha256) == [second.id]


def test_watch_rides_out_an_outage_and_records_the_end(server: int, tmp_path: Path) -> None:
    client = direct(server)
    training = client.files.create(file=dialogues(tmp_path / "t.jsonl").open("rb"),
                                   purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model=MODEL, training_file=training.id)
    plan = FaultPlan(script={f"GET /v1/fine_tuning/jobs/{job.id}": ["reset"] * 4})
    with FaultProxy(server, plan) as proxy:
        provider = OpenAICompatProvider(find_profile("openai"), max_retries=0,
                                        base_url=f"http://127.0.0.1:{proxy.port}/v1")
        cloud_training.record_job(provider, get_provider(
            "openai", base_url=f"http://127.0.0.1:{server}/v1").get_job(job.id),
            local_files={}, config={})
        polls: list[float] = []

        def sleep(seconds: float) -> None:
            polls.append(seconds)
            if len(polls) == 6:  # the job ends on the provider while we wait
                client.fine_tuning.jobs.cancel(job.id)

        updates = list(cloud_training.watch(provider, job.id, interval=0.01, sleep=sleep))
    outages = [update for update in updates if update.job is None]
    assert len(outages) == 4 and "connection_error" in outages[-1].problem
    assert updates[-1].job.status == "cancelled"
    with open_registry() as registry:
        assert registry.get_job(job.id).status == "cancelled"
        messages = [event.message for event in registry.list_events(job.id)]
    assert any("Cancellation requested" in message for message in messages)


def test_jobs_list_merges_provider_and_registry(server: int, tmp_path: Path) -> None:
    provider = get_provider("openai", base_url=f"http://127.0.0.1:{server}/v1")
    ref = provider.upload(dialogues(tmp_path / "t.jsonl"))
    job = provider.create_job(JobSpec(base_model=MODEL, training_file=ref.id))
    cloud_training.record_job(provider, job, local_files={}, config={})
    cloud_training.record_job(provider, job.__class__(id="ftjob-only-here", status="succeeded",
                                                   base_model=MODEL), local_files={}, config={})
    rows = cloud_cmd.list_remote("openai", base_url=provider.base_url)
    sources = {row["id"]: row["source"] for row in rows}
    assert sources == {job.id: "both", "ftjob-only-here": "registry"}


def test_watch_tolerates_unknown_statuses_and_shows_the_failure(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from tunelab.cli import main

    app, statuses = FastAPI(), ["paused", "paused", "failed"]

    @app.get("/v1/fine_tuning/jobs/{job_id}")
    def job(job_id: str) -> dict:
        status = statuses.pop(0) if len(statuses) > 1 else statuses[0]
        error = {"code": "invalid_training_file", "message": "line 3 has no assistant turn",
                 "param": "training_file"} if status == "failed" else None
        return {"object": "fine_tuning.job", "id": job_id, "created_at": 1, "model": MODEL,
                "status": status, "error": error, "fine_tuned_model": None,
                "finished_at": None, "hyperparameters": {}, "organization_id": "o",
                "result_files": [], "seed": 1, "training_file": "file-1"}

    @app.get("/v1/fine_tuning/jobs/{job_id}/events")
    def events(job_id: str) -> dict:
        return {"object": "list", "data": [], "has_more": False}

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with serve_in_thread(app) as port:
        code = main(["jobs", "watch", "ftjob-elsewhere", "--provider", "openai", "--base-url",
                     f"http://127.0.0.1:{port}/v1", "--interval", "1.01"])
    err = capsys.readouterr().err
    assert code == 1 and "status: paused" in err and "status: failed" in err
    assert "[invalid_training_file] line 3 has no assistant turn" in err
    assert "tunelab data check" in err
    with open_registry() as registry:
        assert registry.get_job("ftjob-elsewhere").status == "failed"


def test_csv_and_json_are_sent_as_jsonl(server: int, tmp_path: Path) -> None:
    provider = get_provider("openai", base_url=f"http://127.0.0.1:{server}/v1")
    source = tmp_path / "qa.csv"
    source.write_text("question,answer\n" + "".join(f"Q{n}?,A{n}.\n" for n in range(10)),
                      encoding="utf-8")
    ref = provider.upload(source)
    sent = direct(server).files.content(ref.id).text.splitlines()
    assert len(sent) == 10 and ref.filename.endswith(".jsonl")
    assert json.loads(sent[0])["messages"][-1] == {"role": "assistant", "content": "A0."}
    assert provider.upload(source).reused
