"""Azure OpenAI through the real openai SDK against tests/azure_double.py, over real HTTP:
the CLI's train/watch/events/jobs show/chat on Azure's shapes (model ids, trainingType, the
byte-order mark, the suffix rule, the deployment note), the existing-customer calendar,
a failed job's error, cancel, and exactly-once creates under 429/500 and dropped answers."""

from __future__ import annotations

import codecs
import json
from pathlib import Path

import pytest

from azure_double import Resource, create_app, preference_rows
from faultproxy import FaultPlan, FaultProxy, dialogues, serve_in_thread
from tunelab.cli import main
from tunelab.providers import get_provider
from tunelab.providers.azure import AzureSettings
from tunelab.providers.base import JobSpec, ProviderSettings
from tunelab.providers.retry import RetryPolicy
from tunelab.registry import open_registry

KEY = "azure-canary-key-7f7f7f7f7f7f7f7f"
BASE = "gpt-4.1-2025-04-14"


@pytest.fixture
def resource(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", KEY)
    monkeypatch.delenv("AZURE_OPENAI_ENDPOINT", raising=False)
    state = Resource(key=KEY)
    with serve_in_thread(create_app(state)) as port:
        state.url = f"http://127.0.0.1:{port}/openai/v1"  # type: ignore[attr-defined]
        state.port = port  # type: ignore[attr-defined]
        yield state


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    assert KEY not in captured.out + captured.err
    return code, captured.out, captured.err


def train_args(resource: Resource, path: Path, *extra: str) -> list[str]:
    return ["train", str(path), "--provider", "azure", "--base-url", resource.url,  # type: ignore[attr-defined]
            "--model", BASE, "--yes", "--interval", "0.01", *extra]


def test_a_job_trains_to_success_in_azures_shapes(
        resource: Resource, tmp_path: Path, tunelab_home: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    train = dialogues(tmp_path / "natasha.jsonl")
    code, out, err = run(capsys, *train_args(resource, train, "--suffix", "natasha",
                                             "--azure-training-type", "GlobalStandard",
                                             "--existing-customer", "--json"))
    assert code == 0, err
    body = resource.bodies[0]
    assert body["trainingType"] == "GlobalStandard" and body["suffix"] == "natasha"
    assert body["method"]["type"] == "supervised"
    uploaded = next(iter(resource.contents.values()))
    assert uploaded.startswith(codecs.BOM_UTF8)  # the docs ask for it
    assert uploaded[3:] == train.read_bytes()
    job = json.loads(out)
    model = job["fine_tuned_model"]
    assert model.startswith(f"{BASE}.ft-") and job["status"] == "succeeded"
    # serving needs a deployment: the note says how, as the job's last event
    assert "az cognitiveservices account deployment create" in err
    code, out, _ = run(capsys, "jobs", "events", job["id"], "--json")
    messages = [event["message"] for event in json.loads(out)["events"]]
    assert any("--deployment-name " + model in message for message in messages)
    # the model id is taken wherever a job is: jobs show, chat
    code, out, _ = run(capsys, "jobs", "show", model, "--json")
    assert code == 0 and json.loads(out)["id"] == job["id"]
    code, out, _ = run(capsys, "chat", model, "--message", "Hi", "--json")
    assert code == 0 and "small step" in out
    # the key is nowhere: not in the registry, the run folders or the logs
    for path in tunelab_home.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
    # a second launch of the same data reuses the upload (its hash is the BOM copy's)
    code, _, err = run(capsys, *train_args(resource, train, "--existing-customer",
                                           "--no-wait"))
    assert code == 0 and "already uploaded" in err and resource.created["files"] == 1


def test_a_suffix_azure_refuses_is_refused_before_any_upload(
        resource: Resource, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train = dialogues(tmp_path / "natasha.jsonl")
    code, _, err = run(capsys, *train_args(resource, train, "--suffix", "natasha.v2",
                                           "--existing-customer"))
    assert code == 2 and "--suffix natasha-v2" in err and "no '.'" not in err
    assert "at most 18 characters" in err and "Traceback" not in err
    code, _, err = run(capsys, *train_args(resource, train, "--suffix",
                                           "a-persona-called-natasha", "--existing-customer"))
    assert code == 2 and "--suffix a-persona-called-n" in err
    assert resource.created == {}  # nothing uploaded, nothing created


def test_azures_calendar_asks_about_existing_customers(
        resource: Resource, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    train = dialogues(tmp_path / "natasha.jsonl")
    # 2026-12-02: past the base model's retirement (2026-10-14), before 2027-04-14
    code, _, err = run(capsys, *train_args(resource, train, "--dry-run"))
    assert code == 0 and "only for customers who fine-tuned there before" in err
    assert "--existing-customer" in err and "2027-04-14" in err
    code, _, err = run(capsys, *train_args(resource, train, "--no-existing-customer"))
    assert code == 2 and "2026-10-14" in err and "--provider together" in err
    code, _, err = run(capsys, *train_args(resource, train, "--existing-customer",
                                           "--dry-run"))
    assert code == 0 and "customers who fine-tuned" not in err
    monkeypatch.setenv("TUNELAB_TODAY", "2027-04-20")
    code, _, err = run(capsys, *train_args(resource, train, "--existing-customer"))
    assert code == 2 and "not even from existing customers" in err
    monkeypatch.setenv("TUNELAB_TODAY", "2027-10-14")
    code, _, err = run(capsys, *train_args(resource, train, "--existing-customer"))
    assert code == 2 and "shut down on 2027-10-14" in err
    assert resource.created == {}


def test_a_failed_job_shows_azures_error_and_a_running_one_cancels(
        resource: Resource, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = dialogues(tmp_path / "bad.jsonl")
    bad.write_text(bad.read_text().replace("small step on project 3", "FAIL"))
    code, _, err = run(capsys, *train_args(resource, bad, "--existing-customer"))
    assert code == 1 and "invalid_training_file" in err and "line 13" in err
    good = dialogues(tmp_path / "good.jsonl")
    code, out, _ = run(capsys, *train_args(resource, good, "--existing-customer", "--no-wait",
                                           "--json"))
    job_id = json.loads(out)["id"]
    code, out, _ = run(capsys, "jobs", "cancel", job_id, "--json")
    assert code == 0 and json.loads(out)["status"] == "cancelled"
    with open_registry() as registry:
        assert registry.get_job(job_id).status == "cancelled"


def test_creates_happen_once_through_429s_500s_and_lost_answers(
        resource: Resource, tmp_path: Path) -> None:
    plan = FaultPlan(script={"POST /openai/v1/files": ["500", "drop_answer"],
                             "POST /openai/v1/fine_tuning/jobs": ["429", "drop_answer", "500"],
                             "GET /openai/v1/fine_tuning/jobs": ["500"]})
    with FaultProxy(resource.port, plan) as proxy:  # type: ignore[attr-defined]
        provider = get_provider("azure", ProviderSettings(
            base_url=f"http://127.0.0.1:{proxy.port}/openai/v1",
            retry=RetryPolicy(timeout=30), own=AzureSettings(azure_training_type="Standard")))
        provider._sleep = lambda _seconds: None  # type: ignore[attr-defined]
        ref = provider.upload(dialogues(tmp_path / "train.jsonl"))
        job = provider.create_job(JobSpec(base_model=BASE, training_file=ref.id,
                                          suffix="natasha"))
    assert resource.created == {"files": 1, "jobs": 1}
    assert job.id in resource.jobs and resource.bodies[-1]["trainingType"] == "Standard"
    assert plan.log["drop_answer"] == 2 and plan.log["429"] == 1


def test_a_dpo_job_goes_to_azure_in_openais_method_shape(
        resource: Resource, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(preference_rows(12), encoding="utf-8")
    code, out, err = run(capsys, *train_args(resource, pairs, "--method", "dpo", "--beta",
                                             "0.2", "--existing-customer", "--no-wait",
                                             "--json"))
    assert code == 0, err
    method = resource.bodies[0]["method"]
    assert method["type"] == "dpo" and method["dpo"]["hyperparameters"]["beta"] == 0.2
    assert next(iter(resource.contents.values())).startswith(codecs.BOM_UTF8)


def test_with_the_management_settings_the_model_is_deployed_once_trained(
        resource: Resource, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        tunelab_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train = dialogues(tmp_path / "natasha.jsonl")
    manage = ["--azure-subscription", "sub-1", "--azure-resource-group", "rg-acme",
              "--azure-resource", "acme", "--azure-token-env", "ACME_AAD_TOKEN",
              "--azure-management-url", f"http://127.0.0.1:{resource.port}"]  # type: ignore[attr-defined]
    monkeypatch.setenv("ACME_AAD_TOKEN", "a-stale-token")
    code, out, err = run(capsys, *train_args(resource, train, "--existing-customer", *manage,
                                             "--json"))
    assert code == 0 and "refused the management token in ACME_AAD_TOKEN" in err
    assert "curl -X PUT" in err and resource.deployments == {}  # said how, job still fine
    monkeypatch.setenv("ACME_AAD_TOKEN", resource.management_token)
    code, out, err = run(capsys, *train_args(resource, train, "--existing-customer", *manage,
                                             "--json"))
    model = json.loads(out)["fine_tuned_model"]
    assert code == 0 and f"deployed {model} as deployment {model} on acme" in err
    assert resource.management_token not in out + err
    assert resource.deployments[model]["path"] == ("sub-1", "rg-acme", "acme")
    assert resource.deployments[model]["properties"]["model"]["name"] == model
    for path in tunelab_home.rglob("*"):
        if path.is_file():
            assert resource.management_token.encode() not in path.read_bytes(), path
