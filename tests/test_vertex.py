"""Vertex AI tuning through the real google-genai SDK and google-cloud-storage.

Vertex is the loopback double in vertex_double.py; Cloud Storage is gcp-storage-emulator,
started and stopped here. Credentials go through the real google.auth.default, reading an
ADC file whose token is still valid, so no request ever leaves the machine.
"""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path

import pytest

from conftest import EXAMPLES
from faultproxy import FaultPlan, FaultProxy
from tunelab.data.gemini import openai_to_gemini
from tunelab.data.reader import load_examples
from tunelab.errors import (
    AuthError,
    DataError,
    NotFoundError,
    ProviderError,
    TransientProviderError,
    UsageError,
)
from tunelab.providers import vertex
from tunelab.providers.base import ChatOptions, JobSpec
from vertex_double import VertexDouble

TRAIN = EXAMPLES / "natasha_train.jsonl"
PROJECT, BUCKET, LOCATION = "tunelab-test", "natasha-bucket", "us-central1"
PARENT = f"projects/{PROJECT}/locations/{LOCATION}"


@pytest.fixture
def double():
    with VertexDouble() as running:
        yield running


@pytest.fixture
def adc(tmp_path, monkeypatch) -> Path:
    """Application Default Credentials holding a token valid for years: google.auth.default
    reads them for real, and nothing ever needs to reach Google to refresh them."""
    path = tmp_path / "adc.json"
    path.write_text(json.dumps({
        "type": "authorized_user", "client_id": "tunelab-test", "client_secret": "unused",
        "refresh_token": "unused", "token": "double-access-token",
        "expiry": "2099-01-01T00:00:00Z", "quota_project_id": "adc-project"}))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))  # no user gcloud config
    for name in ("GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_LOCATION", "GOOGLE_API_KEY",
                 "GEMINI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    return path


@pytest.fixture(scope="module")
def emulator() -> str:
    """gcp-storage-emulator in memory, holding the bucket, for this module's tests."""
    from gcp_storage_emulator.server import create_server

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def gcs(emulator, monkeypatch):
    """A client on the emulator; the bucket is emptied after each test."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator)
    client = storage.Client(project=PROJECT, credentials=AnonymousCredentials())
    yield client
    for blob in client.bucket(BUCKET).list_blobs():
        blob.delete()


@pytest.fixture
def provider(double, adc, gcs) -> vertex.VertexProvider:
    return vertex.create(base_url=double.url, project_id=PROJECT, bucket=BUCKET,
                         adapter_size=4)


def spec(training: str, **changes) -> JobSpec:
    values = dict(base_model="gemini-2.5-flash", training_file=training, suffix="natasha-v1",
                  epochs=3, learning_rate=0.5)
    return JobSpec(**{**values, **changes})


def test_upload_converts_to_gemini_and_names_the_object_by_its_hash(provider, gcs):
    ref = provider.upload(TRAIN)
    blob = gcs.bucket(BUCKET).get_blob(f"tunelab/{ref.sha256}.jsonl")
    data = blob.download_as_bytes()
    assert ref.id == f"gs://{BUCKET}/tunelab/{ref.sha256}.jsonl" and not ref.reused
    assert hashlib.sha256(data).hexdigest() == ref.sha256 and ref.bytes == len(data)
    records = [json.loads(line) for line in data.decode().splitlines()]
    assert records == [openai_to_gemini(example) for example in load_examples(TRAIN)]
    assert records[0]["contents"][0]["role"] == "user"


def test_upload_is_skipped_when_the_object_exists(provider, gcs):
    first = provider.upload(TRAIN)
    blob = gcs.bucket(BUCKET).get_blob(f"tunelab/{first.sha256}.jsonl")
    blob.upload_from_string(b"already here\n")  # marks the object: an upload would replace it
    second = vertex.create(base_url=provider.options.base_url, project_id=PROJECT,
                           bucket=BUCKET).upload(TRAIN)
    assert second.reused and second.id == first.id
    assert blob.download_as_bytes() == b"already here\n"


def test_create_job_sends_model_dataset_epochs_adapter_and_display_name(provider, double,
                                                                        tmp_path):
    validation = tmp_path / "valid.jsonl"
    validation.write_text("".join(TRAIN.read_text().splitlines(keepends=True)[:5]))
    train_ref, valid_ref = provider.upload(TRAIN), provider.upload(validation)
    job = provider.create_job(spec(train_ref.id, validation_file=valid_ref.id))
    [sent] = double.bodies("POST", f"{PARENT}/tuningJobs")
    assert sent == {
        "baseModel": "gemini-2.5-flash",
        "supervisedTuningSpec": {
            "trainingDatasetUri": train_ref.id, "validationDatasetUri": valid_ref.id,
            "hyperParameters": {"epochCount": 3, "learningRateMultiplier": 0.5,
                                "adapterSize": "ADAPTER_SIZE_FOUR"}},
        "tunedModelDisplayName": "natasha-v1",
    }
    assert job.id == f"{PARENT}/tuningJobs/4001"
    assert (job.status, job.native_status, job.suffix) == ("queued", "JOB_STATE_PENDING",
                                                           "natasha-v1")
    assert job.training_file == train_ref.id
    authorized = [s for s in double.sent if s.path.endswith("/tuningJobs")]
    assert authorized[0].authorization == "Bearer double-access-token"  # ADC was used


def test_a_create_whose_answer_is_lost_adopts_the_job_instead_of_making_another(
        double, adc, gcs):
    plan = FaultPlan(script={f"POST /v1beta1/{PARENT}/tuningJobs": ["drop_answer"]})
    with FaultProxy(int(double.url.rsplit(":", 1)[1].strip("/")), plan) as proxy:
        provider = vertex.create(base_url=f"http://127.0.0.1:{proxy.port}/",
                                 project_id=PROJECT, bucket=BUCKET)
        job = provider.create_job(spec(f"gs://{BUCKET}/tunelab/x.jsonl"))
    assert plan.log["drop_answer"] == 1 and len(double.jobs) == 1
    assert job.id == next(iter(double.jobs)) and job.status == "queued"


def test_dry_run_describes_exactly_what_create_job_sends_and_sends_nothing(provider, double,
                                                                           gcs):
    options = vertex.VertexOptions.resolve(project_id=PROJECT, bucket=BUCKET,
                                           base_url=double.url, adapter_size=4)
    described = vertex.describe_request(spec(str(TRAIN)), options)
    assert double.sent == [] and list(gcs.bucket(BUCKET).list_blobs()) == []
    assert described["object"].startswith(f"gs://{BUCKET}/tunelab/")
    assert described["first_example"] == openai_to_gemini(load_examples(TRAIN)[0])
    assert described["request"]["url"] == f"{double.url}v1beta1/{PARENT}/tuningJobs"
    ref = provider.upload(TRAIN)
    assert ref.id == described["object"]
    provider.create_job(spec(ref.id))
    assert double.bodies("POST", "/tuningJobs") == [described["request"]["body"]]


STATES = {
    "JOB_STATE_QUEUED": "queued", "JOB_STATE_PENDING": "queued",
    "JOB_STATE_RUNNING": "running", "JOB_STATE_SUCCEEDED": "succeeded",
    "JOB_STATE_FAILED": "failed", "JOB_STATE_EXPIRED": "failed",
    "JOB_STATE_CANCELLING": "cancelled", "JOB_STATE_CANCELLED": "cancelled",
    "JOB_STATE_PAUSED": "JOB_STATE_PAUSED",  # not in tunelab's vocabulary: kept and shown
    "JOB_STATE_SOMETHING_NEW": "JOB_STATE_SOMETHING_NEW",
}


def test_vertex_states_map_to_tunelab_statuses(provider, double):
    name = provider.create_job(spec(f"gs://{BUCKET}/tunelab/x.jsonl")).id
    double.advance(name, *({"state": state} for state in STATES))
    seen = {}
    for _ in STATES:
        job = provider.get_job(name)
        seen[job.native_status] = job.status
    assert seen == STATES


RUNNING = {"state": "JOB_STATE_RUNNING", "startTime": "2026-11-22T02:00:00Z"}
SUCCEEDED = {
    "state": "JOB_STATE_SUCCEEDED", "endTime": "2026-11-22T03:00:00Z",
    "tunedModel": {"model": f"{PARENT}/models/77@1", "endpoint": f"{PARENT}/endpoints/88"},
    "tuningDataStats": {"supervisedTuningDataStats": {
        "tuningDatasetExampleCount": "144", "totalBillableTokenCount": "61234",
        "tuningStepCount": "27", "totalTruncatedExampleCount": "2",
        "droppedExampleReasons": ["example 7 exceeds the token limit"]}},
}


def test_a_succeeded_job_has_its_endpoint_stats_and_events(provider, double):
    name = provider.create_job(spec(f"gs://{BUCKET}/tunelab/x.jsonl")).id
    double.advance(name, RUNNING)
    assert [event.id for event in provider.list_events(name)] == ["created", "running"]
    double.advance(name, SUCCEEDED)
    events = provider.list_events(name, after="running")
    assert [event.id for event in events] == ["data_stats", "finished"]
    assert "billable tokens 61,234" in events[0].message
    assert "dropped examples 2" in events[0].message and "token limit" in events[0].message
    assert events[1].message.endswith(f"{PARENT}/endpoints/88")
    job = provider.get_job(name)
    assert job.status == "succeeded" and job.fine_tuned_model == f"{PARENT}/endpoints/88"
    assert job.trained_tokens == 61234 and job.raw["tunelab_data_stats"]["dropped_examples"] == 2


def test_a_failed_job_reports_vertex_error_as_an_error_event(provider, double):
    name = provider.create_job(spec(f"gs://{BUCKET}/tunelab/x.jsonl")).id
    double.advance(name, {"state": "JOB_STATE_FAILED", "endTime": "2026-11-22T03:00:00Z",
                          "error": {"code": 3, "message": "Dataset has invalid role"}})
    job = provider.get_job(name)
    assert job.status == "failed" and job.error["message"] == "Dataset has invalid role"
    last = provider.list_events(name)[-1]
    assert last.level == "error" and "Dataset has invalid role" in last.message


def test_cancel_posts_cancel_and_reports_cancelled(provider, double):
    name = provider.create_job(spec(f"gs://{BUCKET}/tunelab/x.jsonl")).id
    job = provider.cancel(name)
    assert double.sent[-2].path == f"/v1beta1/{name}:cancel"
    assert (job.status, job.native_status) == ("cancelled", "JOB_STATE_CANCELLING")


def test_cancelling_a_finished_job_is_vertex_own_error_in_one_line(provider, double):
    name = provider.create_job(spec(f"gs://{BUCKET}/tunelab/x.jsonl")).id
    double.advance(name, SUCCEEDED)
    provider.get_job(name)
    with pytest.raises(ProviderError) as caught:
        provider.cancel(name)
    assert caught.value.code == "FAILED_PRECONDITION"
    assert not isinstance(caught.value, TransientProviderError)  # a retry would not help
    assert "Cannot cancel" in caught.value.render() and "\n" not in caught.value.render()


def test_checkpoints_are_typed_and_carry_their_endpoints(provider, double):
    name = provider.create_job(spec(f"gs://{BUCKET}/tunelab/x.jsonl")).id
    assert provider.list_checkpoints(name) == []
    checkpoints = [{"checkpointId": str(n), "epoch": str(n), "step": str(9 * n),
                    "endpoint": f"{PARENT}/endpoints/8{n}"} for n in (1, 2)]
    double.advance(name, {**SUCCEEDED, "tunedModel": {**SUCCEEDED["tunedModel"],
                                                      "checkpoints": checkpoints}})
    rows = provider.list_checkpoints(name)
    assert [(row.name, row.kind, row.step, row.epoch, row.model) for row in rows] == [
        ("checkpoint-1", "epoch", 9, 1, f"{PARENT}/endpoints/81"),
        ("checkpoint-2", "epoch", 18, 2, f"{PARENT}/endpoints/82")]


def test_a_server_error_or_a_busy_answer_is_transient(double, adc, gcs):
    name = vertex.create(base_url=double.url, project_id=PROJECT,
                         bucket=BUCKET).create_job(spec(f"gs://{BUCKET}/tunelab/x.jsonl")).id
    plan = FaultPlan(script={f"GET /v1beta1/{name}": ["500", "429"]})
    with FaultProxy(int(double.url.rsplit(":", 1)[1].strip("/")), plan) as proxy:
        provider = vertex.create(base_url=f"http://127.0.0.1:{proxy.port}/",
                                 project_id=PROJECT, bucket=BUCKET)
        for _ in range(2):
            with pytest.raises(TransientProviderError):
                provider.get_job(name)
        assert provider.get_job(name).status == "queued"  # the outage passed


def test_list_jobs_returns_mapped_jobs(provider):
    names = [provider.create_job(spec(f"gs://{BUCKET}/tunelab/{n}.jsonl")).id for n in "ab"]
    assert sorted(job.id for job in provider.list_jobs()) == sorted(names)


def test_chat_calls_generate_content_on_the_tuned_endpoint(provider, double):
    name = provider.create_job(spec(f"gs://{BUCKET}/tunelab/x.jsonl")).id
    double.advance(name, SUCCEEDED)
    messages = [{"role": "system", "content": "Ты — Наташа."},
                {"role": "user", "content": "Привет"}]
    reply = provider.chat(name, messages, ChatOptions(temperature=0.0, max_tokens=64))
    assert reply.text == double.reply_text and reply.model == f"{PARENT}/endpoints/88"
    assert (reply.prompt_tokens, reply.completion_tokens) == (12, 7)
    [body] = double.bodies("POST", f"{PARENT}/endpoints/88:generateContent")
    assert body["systemInstruction"]["parts"] == [{"text": "Ты — Наташа."}]
    assert body["contents"] == [{"role": "user", "parts": [{"text": "Привет"}]}]
    assert body["generationConfig"] == {"temperature": 0.0, "maxOutputTokens": 64}


def test_chat_with_a_base_gemini_model_uses_the_publisher_path(provider, double):
    reply = provider.chat("gemini-2.5-flash", [{"role": "user", "content": "Привет"}])
    assert reply.text == double.reply_text
    assert double.bodies("POST", f"{PARENT}/publishers/google/models/gemini-2.5-flash"
                                 ":generateContent")


def test_missing_application_default_credentials_is_one_line_naming_the_fix(
        double, adc, monkeypatch, tmp_path):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    provider = vertex.create(base_url=double.url, project_id=PROJECT, bucket=BUCKET)
    with pytest.raises(AuthError) as caught:
        provider.create_job(spec(f"gs://{BUCKET}/tunelab/x.jsonl"))
    line = caught.value.render()
    assert "\n" not in line and caught.value.exit_code == 2
    assert "gcloud auth application-default login" in line and "GOOGLE_CLOUD_PROJECT" in line
    assert double.sent == []


def test_missing_project_and_bucket_name_their_flags(double, adc, gcs):
    with pytest.raises(UsageError, match="--bucket"):
        vertex.create(base_url=double.url, project_id=PROJECT).upload(TRAIN)
    options = vertex.VertexOptions.resolve(bucket=BUCKET)
    with pytest.raises(UsageError, match="--project-id"):
        vertex.describe_request(spec(str(TRAIN)), options)


def test_project_falls_back_to_google_cloud_project(double, adc, monkeypatch, caplog):
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "from-env")
    vertex.create(base_url=double.url).list_jobs()
    [path] = [s.path for s in double.sent if "tuningJobs" in s.path]
    assert path.startswith("/v1beta1/projects/from-env/")
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT")
    with pytest.raises(UsageError, match="--project-id"):
        vertex.create(base_url=double.url).list_jobs()
    assert not caplog.records  # google.auth's "no project ID" warning stays quiet


def test_a_missing_bucket_or_job_is_not_found(double, adc, gcs):
    with pytest.raises(NotFoundError, match="no-such-bucket"):
        vertex.create(base_url=double.url, project_id=PROJECT,
                      bucket="no-such-bucket").upload(TRAIN)
    with pytest.raises(NotFoundError):
        vertex.create(base_url=double.url).get_job(f"{PARENT}/tuningJobs/999")


def test_limits_are_checked_before_anything_is_sent(provider, double, gcs, tmp_path):
    huge = tmp_path / "huge.jsonl"
    examples = [{"messages": [{"role": "user", "content": "hi"},
                              {"role": "assistant", "content": "hello"}]}] * 2
    examples.append({"messages": [{"role": "user", "content": "слово " * 140_000},
                                  {"role": "assistant", "content": "ok"}]})
    huge.write_text("".join(json.dumps(example) + "\n" for example in examples))
    with pytest.raises(DataError, match="example 3 has about") as caught:
        provider.upload(huge)
    assert "131,072" in caught.value.render()
    validation = tmp_path / "valid.jsonl"
    validation.write_text(json.dumps(examples[0]) + "\n" * 1 * 1 + "".join(
        json.dumps({"messages": [{"role": "user", "content": f"q{n}"},
                                 {"role": "assistant", "content": "a"}]}) + "\n"
        for n in range(5_000)))
    ref = provider.upload(validation)
    with pytest.raises(UsageError, match="--validation-file has 5,001 examples"):
        provider.create_job(spec(f"gs://{BUCKET}/tunelab/x.jsonl", validation_file=ref.id))
    sixteen = vertex.create(base_url=double.url, project_id=PROJECT, bucket=BUCKET,
                            adapter_size=16)
    with pytest.raises(UsageError, match="--adapter-size 16"):
        sixteen.create_job(spec("gs://b/x.jsonl", base_model="gemini-2.5-pro"))
    assert not [s for s in double.sent if "tuningJobs" in s.path]


# through the CLI ------------------------------------------------------------------------------

def test_cli_chat_with_a_vertex_endpoint(double, adc, capsys):
    from tunelab.cli import main

    code = main(["chat", f"vertex:{PARENT}/endpoints/88", "-m", "Привет",
                 "--system", "Ты — Наташа.", "--base-url", double.url, "--json"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["text"] == double.reply_text
    [body] = double.bodies("POST", f"{PARENT}/endpoints/88:generateContent")
    assert body["systemInstruction"]["parts"] == [{"text": "Ты — Наташа."}]


def test_cli_test_asks_a_recorded_vertex_job_through_its_endpoint(provider, double, capsys):
    from tunelab.cli import main
    from tunelab.providers import cloud_training

    name = provider.create_job(spec(f"gs://{BUCKET}/tunelab/x.jsonl")).id
    double.advance(name, SUCCEEDED)
    cloud_training.record_job(provider, provider.get_job(name), local_files={}, config={})
    assert main(["test", name, "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert results and all(row["text"] == double.reply_text for row in results)
    assert len(double.bodies("POST", f"{PARENT}/endpoints/88:generateContent")) == len(results)


def train(double, *flags: str) -> int:
    """`tunelab train` on the Natasha dataset with every Vertex flag, in process."""
    from tunelab.cli import main

    return main(["train", str(TRAIN), "--provider", "vertex", "--project-id", PROJECT,
                 "--bucket", BUCKET, "--base-url", double.url, "--model", "gemini-2.5-flash",
                 "--epochs", "3", "--learning-rate-multiplier", "0.5", "--adapter-size", "4",
                 "--suffix", "natasha-v1", "--yes", "--interval", "0.01", *flags])


def test_train_end_to_end_uploads_tunes_watches_records_and_tests(double, adc, gcs, capsys):
    from tunelab.registry import open_registry

    double.lifecycle = [RUNNING, SUCCEEDED]
    assert train(double, "--json") == 0
    result = json.loads(capsys.readouterr().out)
    [sent] = double.bodies("POST", f"{PARENT}/tuningJobs")
    assert sent["baseModel"] == "gemini-2.5-flash"
    assert sent["supervisedTuningSpec"]["trainingDatasetUri"] == result["training_file"]
    assert sent["supervisedTuningSpec"]["hyperParameters"] == {
        "epochCount": 3, "learningRateMultiplier": 0.5, "adapterSize": "ADAPTER_SIZE_FOUR"}
    assert sent["tunedModelDisplayName"] == "natasha-v1"
    assert result["status"] == "succeeded" and result["trained_tokens"] == 61234
    assert result["fine_tuned_model"] == f"{PARENT}/endpoints/88"
    assert [s["answer"] for s in result["samples"]] == [double.reply_text] * 5
    with open_registry() as registry:
        record = registry.get_job(result["id"])
        messages = [event.message for event in registry.list_events(result["id"])]
    assert (record.provider, record.status, record.native_status) == (
        "vertex", "succeeded", "JOB_STATE_SUCCEEDED")
    assert any("billable tokens 61,234" in message for message in messages)


def test_train_dry_run_prints_object_first_example_and_body_and_sends_nothing(
        double, adc, gcs, capsys):
    assert train(double, "--dry-run", "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert double.sent == [] and list(gcs.bucket(BUCKET).list_blobs()) == []
    assert shown["object"].startswith(f"gs://{BUCKET}/tunelab/")
    assert shown["first_example"] == openai_to_gemini(load_examples(TRAIN)[0])
    assert shown["request"]["url"] == f"{double.url}v1beta1/{PARENT}/tuningJobs"
    assert shown["request"]["body"] == {
        "baseModel": "gemini-2.5-flash",
        "supervisedTuningSpec": {
            "trainingDatasetUri": shown["object"],
            "hyperParameters": {"epochCount": 3, "learningRateMultiplier": 0.5,
                                "adapterSize": "ADAPTER_SIZE_FOUR"}},
        "tunedModelDisplayName": "natasha-v1"}
    assert train(double, "--dry-run") == 0
    printed = capsys.readouterr()
    assert "tunedModelDisplayName" in printed.out and "nothing was uploaded" in printed.err


def test_jobs_commands_follow_a_vertex_job(double, adc, gcs, capsys, monkeypatch):
    from tunelab.cli import main

    double.lifecycle = [RUNNING]
    assert train(double, "--no-wait", "--json") == 0
    running = json.loads(capsys.readouterr().out)["id"]
    assert main(["jobs", "events", running, "--json"]) == 0
    events = json.loads(capsys.readouterr().out)["events"]
    assert [event["id"] for event in events] == ["created", "running"]
    assert main(["jobs", "cancel", running, "--json"]) == 0
    cancelled = json.loads(capsys.readouterr().out)
    assert (cancelled["status"], cancelled["native_status"]) == ("cancelled",
                                                                 "JOB_STATE_CANCELLING")
    assert double.sent[-2].path == f"/v1beta1/{running}:cancel"

    double.lifecycle = [SUCCEEDED]
    assert train(double, "--no-wait", "--json") == 0
    finished = json.loads(capsys.readouterr().out)["id"]
    assert main(["jobs", "watch", finished, "--json"]) == 0
    watched = json.loads(capsys.readouterr().out)
    assert watched["status"] == "succeeded" and len(watched["samples"]) == 5
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", PROJECT)  # jobs list has no --project-id
    assert main(["jobs", "list", "--provider", "vertex", "--base-url", double.url, "--json"]) == 0
    listed = {job["id"]: job["status"] for job in json.loads(capsys.readouterr().out)["jobs"]}
    assert listed == {running: "cancelled", finished: "succeeded"}


def test_cli_without_credentials_prints_one_line_naming_the_fix(double, adc, monkeypatch,
                                                                 tmp_path, capsys):
    from tunelab.cli import main

    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    code = main(["chat", f"vertex:{PARENT}/endpoints/88", "-m", "hi", "--base-url", double.url])
    error = capsys.readouterr().err.strip()
    assert code == 2 and len(error.splitlines()) == 1 and "Traceback" not in error
    assert "gcloud auth application-default login" in error and "GOOGLE_CLOUD_PROJECT" in error
