"""The provider contract: every registered provider implements it, the local one through the
registry; SDK errors become one tree, a retryable failure its own type, and a watch retries
only that type. Servers are real loopback apps; no model is loaded here."""

from __future__ import annotations

import inspect
import json
import time
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from faultproxy import dialogues, serve_in_thread
from tunelab.cli import main
from tunelab.config import resolve_config
from tunelab.errors import ConfigError, NotFoundError, ProviderError, TransientProviderError
from tunelab.providers import PROVIDERS, cloud_training, get_provider
from tunelab.providers.base import Checkpoint, JobSpec, Provider, ProviderSettings
from tunelab.providers.local import LocalProvider
from tunelab.providers.openai_compat import OpenAICompatProvider
from tunelab.providers.profiles import find_profile
from tunelab.registry import Checkpoint as CheckpointRow
from tunelab.registry import JobRecord, open_registry

KEY = "sk-canary-contract-0123456789"
CONTRACT = ("name", "capabilities", "base_url", "upload", "describe_request", "create_job",
            "get_job", "list_jobs", "list_events", "list_checkpoints", "cancel", "chat",
            "download_weights")


def test_the_protocol_names_every_operation_callers_use() -> None:
    members = {name for name, _ in inspect.getmembers(Provider) if not name.startswith("_")}
    assert members >= set(CONTRACT)


@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_every_registered_provider_implements_the_contract(
        name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("OPENAI_API_KEY", "MOONSHOT_API_KEY", "AZURE_OPENAI_API_KEY",
                     "FIREWORKS_API_KEY"):
        monkeypatch.setenv(variable, KEY)
    # Azure's resource and Fireworks' account are where their APIs live, like a base URL
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://tunelab-test.openai.azure.com")
    monkeypatch.setenv("FIREWORKS_ACCOUNT_ID", "tunelab-test")
    entry = PROVIDERS[name]
    own = entry.settings() if entry.settings else None  # its own settings, at their defaults
    provider = entry.build(ProviderSettings(own=own))
    assert isinstance(provider, Provider) and provider.name == name
    for member in CONTRACT[3:]:  # the operations are methods, not stubs left to chance
        assert callable(getattr(type(provider), member))


def local_job(job_id: str, tmp_path: Path, *, status: str = "succeeded",
              provider: str = "local") -> None:
    now = time.time()
    with open_registry() as registry:
        registry.create_job(JobRecord(id=job_id, provider=provider, status=status,
                                      created_at=now, updated_at=now, base_model="m",
                                      run_dir=str(tmp_path / job_id),
                                      metrics={"trained_tokens": 1234}))
        registry.add_event(job_id, "job created")
        for name, kind, step in (("step-000002", "step", 2), ("latest", "latest", 4)):
            (tmp_path / job_id / name).mkdir(parents=True)  # listed while it is on disk
            registry.upsert_checkpoint(CheckpointRow(
                job_id, name, kind, now, step, 1.0, str(tmp_path / job_id / name),
                {"train_loss": 0.5, "valid_loss": 0.75}))


def test_local_checkpoints_come_from_the_registry_as_typed_objects(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    local_job("ftjob-ckpt", tmp_path)
    rows = get_provider("local").list_checkpoints("ftjob-ckpt")
    assert [(row.name, row.kind, row.step) for row in rows] == [
        ("step-000002", "step", 2), ("latest", "latest", 4)]
    assert all(isinstance(row, Checkpoint) for row in rows)
    assert rows[0].metrics == {"train_loss": 0.5, "valid_loss": 0.75}
    assert main(["jobs", "checkpoints", "ftjob-ckpt", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [row["name"] for row in shown["checkpoints"]] == ["step-000002", "latest"]
    assert shown["checkpoints"][0]["path"].endswith("step-000002")


def test_local_jobs_and_events_go_through_the_contract(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    local_job("ftjob-events", tmp_path)
    job = get_provider("local").get_job("ftjob-events")
    assert (job.status, job.trained_tokens) == ("succeeded", 1234)
    assert main(["jobs", "events", "ftjob-events", "--json"]) == 0
    [event] = json.loads(capsys.readouterr().out)["events"]
    assert event["message"] == "job created" and event["id"] == "1"
    assert get_provider("local").list_events("ftjob-events", after="1") == []


def test_the_local_provider_leaves_other_providers_jobs_alone(tmp_path: Path) -> None:
    local_job("ftjob-remote", tmp_path, provider="openai")
    with pytest.raises(NotFoundError, match="--provider openai"):
        LocalProvider().cancel("ftjob-remote")


def test_local_describe_request_is_the_resolved_config(tmp_path: Path) -> None:
    train = dialogues(tmp_path / "train.jsonl")
    described = LocalProvider().describe_request(JobSpec(
        base_model="", training_file=str(train), epochs=2, learning_rate=1e-4, seed=7))
    config = described["config"]
    assert (config["train_file"], config["epochs"], config["learning_rate"], config["seed"]) \
        == (str(train), 2, 1e-4, 7)
    assert config["model"] is None and described["run_dir"].endswith("<job id>")
    resolved = resolve_config(preset="quick", flags={"train_file": str(train)})
    carried = LocalProvider().describe_request(JobSpec("", str(train), epochs=9,
                                                       config=resolved))
    assert carried["config"] == resolved.model_dump(mode="json")  # the carried config wins
    with pytest.raises(ConfigError, match="missing.jsonl"):
        LocalProvider().describe_request(JobSpec("", str(tmp_path / "missing.jsonl")))


# errors -----------------------------------------------------------------------------------
@pytest.fixture
def refusing(monkeypatch: pytest.MonkeyPatch):
    """An endpoint answering GET /fine_tuning/jobs/{id} with the status the id names."""
    app = FastAPI()

    @app.get("/v1/fine_tuning/jobs/{job_id}")
    def refuse(job_id: str) -> JSONResponse:
        status = int(job_id)
        return JSONResponse({"error": {"message": f"status {status}; key {KEY}",
                                       "code": f"code_{status}"}},
                            status_code=status, headers={"Retry-After": "7"})

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with serve_in_thread(app) as port:
        yield OpenAICompatProvider(find_profile("openai"), max_retries=0,
                                   base_url=f"http://127.0.0.1:{port}/v1")


def test_busy_and_failing_servers_are_transient_other_refusals_are_final(refusing) -> None:
    for status in (429, 503):
        with pytest.raises(TransientProviderError) as caught:
            refusing.get_job(str(status))
        assert caught.value.retry_after == 7.0 and f"code_{status}" in caught.value.render()
        assert KEY not in caught.value.render()
    with pytest.raises(ProviderError) as caught:
        refusing.get_job("400")
    assert not isinstance(caught.value, TransientProviderError)
    assert "code_400" in caught.value.render() and KEY not in caught.value.render()


def test_a_watch_stops_at_once_on_a_final_error(refusing) -> None:
    sleeps: list[float] = []
    with pytest.raises(ProviderError, match="code_400"):
        list(cloud_training.watch(refusing, "400", interval=0.01, sleep=sleeps.append))
    assert sleeps == []  # no retry: asking again would get the same answer


def test_a_watch_retries_a_transient_error(refusing) -> None:
    updates = cloud_training.watch(refusing, "503", interval=0.01, sleep=lambda _: None,
                                   max_outage_s=3600)
    first, second = next(updates), next(updates)
    assert first.job is None and second.job is None and "code_503" in second.problem
