"""DPO in the cloud: `tunelab train prefs.jsonl --method dpo --provider openai` over real HTTP
through the openai SDK against the stand-in account (tests/openai_double.py), and the
refusals that come before anything is uploaded: a model that trains no DPO, a provider that
trains no DPO (Vertex, a providers.yaml endpoint that declares none, Kimi)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from faultproxy import serve_in_thread
from openai_double import Account, create_app, jsonl, preference
from tunelab.cli import main
from tunelab.home import home
from tunelab.registry import open_registry

KEY = "sk-canary-dpo-cloud-0123456789"
DPO_GUIDE = "https://developers.openai.com/api/docs/guides/direct-preference-optimization"


@pytest.fixture
def account() -> Account:
    return Account()


@pytest.fixture
def url(account: Account, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("TUNELAB_TODAY", "2026-12-02")
    with serve_in_thread(create_app(account)) as port:
        yield f"http://127.0.0.1:{port}/v1"


@pytest.fixture
def prefs(tmp_path: Path) -> Path:
    path = tmp_path / "prefs.jsonl"
    path.write_bytes(jsonl([preference(n) for n in range(12)]))
    return path


def tunelab(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    assert KEY not in captured.out + captured.err and "Traceback" not in captured.err
    return code, captured.out, captured.err


def refused(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """The one line a refused `tunelab train` prints (exit 2)."""
    code, _, err = tunelab(capsys, "train", *args, "--yes")
    assert code == 2, err
    [line] = err.strip().splitlines()
    return line


def test_a_dpo_job_sends_openais_dpo_method_with_only_the_given_hyperparameters(
        account: Account, url: str, prefs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = tunelab(capsys, "train", str(prefs), "--provider", "openai",
                             "--base-url", url, "--method", "dpo", "--beta", "0.25",
                             "--epochs", "2", "--yes", "--no-wait", "--json")
    assert code == 0, err
    [body] = account.created
    # the default model for DPO is one that trains it; beta and epochs as given, the rest
    # left to OpenAI ("auto")
    assert body["model"] == "gpt-4.1-mini-2025-04-14"
    assert body["method"] == {"type": "dpo", "dpo": {"hyperparameters": {
        "beta": 0.25, "n_epochs": 2}}}
    assert account.files[body["training_file"]][1] == prefs.read_bytes()
    job_id = json.loads(out)["id"]
    with open_registry() as registry:
        config = registry.get_job(job_id).config
    assert config.method == "dpo" and config.hyperparameters.beta == 0.25
    # the job object the SDK read back shows the method as sent
    shown = next(job for job in account.jobs if job["id"] == job_id)
    assert shown["method"]["type"] == "dpo"


def test_the_dry_run_shows_the_dpo_body_and_sends_nothing(
        account: Account, url: str, prefs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = tunelab(capsys, "train", str(prefs), "--provider", "openai",
                             "--base-url", url, "--method", "dpo", "--beta", "0.1",
                             "--model", "gpt-4.1-2025-04-14", "--dry-run", "--json")
    assert code == 0, err
    said = json.loads(out)
    body = said["request"]["body"]
    assert body["method"] == {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.1}}}
    assert body["model"] == "gpt-4.1-2025-04-14"
    # DPO has a rate of its own, which no source states: unknown, not the supervised rate.
    assert said["cost"]["dollars"] is None, said["cost"]
    assert not account.calls["upload"] and not account.created


def test_a_model_that_trains_no_dpo_is_refused_by_name_before_any_upload(
        account: Account, url: str, prefs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for model in ("gpt-4o-mini-2024-07-18", "ft:gpt-4o-2024-08-06:acme:natasha:abc123"):
        line = refused(capsys, str(prefs), "--provider", "openai", "--base-url", url,
                       "--method", "dpo", "--model", model)
        assert f"{model} cannot be trained with DPO on openai" in line
        assert "gpt-4.1-2025-04-14, gpt-4.1-mini-2025-04-14, gpt-4.1-nano-2025-04-14" in line
        assert DPO_GUIDE in line and "--model gpt-4.1" in line
    assert not account.calls["upload"] and not account.created


def test_a_provider_that_trains_no_dpo_refuses_by_name_before_any_upload(
        account: Account, url: str, prefs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # refused before the data is read (the file need not exist), so before any upload
    line = refused(capsys, str(prefs.with_name("absent.jsonl")), "--provider", "vertex",
                   "--method", "dpo")
    assert "vertex cannot train dpo jobs: it trains supervised" in line
    assert "Gemini's supervised format only" in line
    assert "--provider local" in line and "--provider openai" in line
    # an endpoint of providers.yaml trains what it declares (supervised unless it says so)
    home().mkdir(parents=True, exist_ok=True)
    (home() / "providers.yaml").write_text(
        f"mylab:\n  base_url: {url}\n  key_env: OPENAI_API_KEY\n"
        f"prefs:\n  base_url: {url}\n  key_env: OPENAI_API_KEY\n"
        "  capabilities: {methods: [supervised, dpo]}\n")
    line = refused(capsys, str(prefs), "--provider", "mylab", "--method", "dpo")
    assert "mylab cannot train dpo jobs: it trains supervised" in line
    assert "--provider prefs" in line
    line = refused(capsys, str(prefs), "--provider", "kimi", "--method", "dpo")
    assert "kimi has no fine-tuning API" in line
    assert not account.calls["upload"] and not account.created
    code, _, err = tunelab(capsys, "train", str(prefs), "--provider", "prefs", "--method",
                           "dpo", "--model", "gpt-4.1-2025-04-14", "--yes", "--no-wait")
    assert code == 0, err
    assert account.created[0]["method"]["type"] == "dpo"
