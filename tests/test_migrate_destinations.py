"""`tunelab migrate retrain MODEL --to together|fireworks|azure`: from an OpenAI account's
pulled job (tests/openai_double.py) to each destination's stand-in, over real HTTP through
its SDK: the default base model (printed, overridable), OpenAI's hyperparameters mapped as
stated, the job linked to the one it replaces, and `migrate status` naming the destination."""

from __future__ import annotations

import json

import pytest

import azure_double
import fireworks_double
import together_double
from faultproxy import serve_in_thread
from openai_double import NATASHA, create_app, dialogue, jsonl, natasha_account
from tunelab.cli import main
from tunelab.registry import open_registry

OPENAI_KEY = "sk-canary-destinations-0123456789"


@pytest.fixture
def pulled(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """NATASHA (gpt-4o-mini, n_epochs 3, batch_size 1, multiplier 1.8) inventoried and pulled."""
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    account = natasha_account()
    # cloud destinations check the validation file too: at least 10 examples
    account.files["file-natasha-valid"] = ("natasha_val.jsonl", jsonl(
        [dialogue(n) for n in range(50, 62)]))
    with serve_in_thread(create_app(account)) as port:
        url = f"http://127.0.0.1:{port}/v1"
        assert main(["migrate", "inventory", "--base-url", url, "--json"]) == 0
        assert main(["migrate", "pull", NATASHA, "--json"]) == 0
    capsys.readouterr()


def retrain(capsys: pytest.CaptureFixture[str], to: str, url: str,
            *extra: str) -> tuple[dict, str]:
    code = main(["migrate", "retrain", NATASHA, "--to", to, "--base-url", url, "--yes",
                 "--no-wait", "--json", *extra])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out), captured.err


def linked_and_shown(capsys: pytest.CaptureFixture[str], job_id: str, where: str) -> None:
    with open_registry() as registry:
        metadata = registry.get_job(job_id).metadata or {}
    assert metadata["retrain_of"] == "ftjob-natasha" and metadata["replaces"] == NATASHA
    assert main(["migrate", "status", "--json"]) == 0
    rows = {row["job_id"]: row for row in json.loads(capsys.readouterr().out)["models"]}
    assert rows["ftjob-natasha"]["replacement"] == job_id
    assert rows["ftjob-natasha"]["destination"] == where


def test_to_fireworks_an_open_8b_at_the_mapped_rate(
        pulled: None, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FIREWORKS_API_KEY", "fw-canary-destinations")
    monkeypatch.setenv("FIREWORKS_ACCOUNT_ID", fireworks_double.ACCOUNT)
    account = fireworks_double.Account(key="fw-canary-destinations")
    with serve_in_thread(fireworks_double.create_app(account)) as port:
        job, err = retrain(capsys, "fireworks", f"http://127.0.0.1:{port}")
    base = "accounts/fireworks/models/qwen3-8b"
    assert f"base model on fireworks: {base} (an open 8B" in err
    assert "learning_rate_multiplier 1.8 x fireworks's base 0.0001" in err
    body = account.bodies[0]
    assert (body["baseModel"], body["epochs"], body["batchSizeSamples"]) == (base, 3, 1)
    assert body["learningRate"] == pytest.approx(1.8e-4)
    linked_and_shown(capsys, job["id"], f"fireworks {base}")


def test_to_together_with_a_base_model_of_ones_own(
        pulled: None, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TOGETHER_API_KEY", together_double.KEY)
    account = together_double.Account()
    with serve_in_thread(together_double.create_app(account)) as port:
        job, err = retrain(capsys, "together", f"http://127.0.0.1:{port}", "--base-model",
                           "meta-llama/Llama-3.1-8B-Instruct")
    assert "base model on together" not in err  # the user chose: nothing to explain
    body = account.created[0]
    assert body["model"] == "meta-llama/Llama-3.1-8B-Instruct" and body["n_epochs"] == 3
    assert body["learning_rate"] == pytest.approx(1.8e-5)  # 1.8 x together's 1e-05
    linked_and_shown(capsys, job["id"], "together meta-llama/Llama-3.1-8B-Instruct")


def test_to_azure_the_same_base_and_multiplier(
        pulled: None, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "azure-canary-destinations")
    resource = azure_double.Resource(key="azure-canary-destinations")
    with serve_in_thread(azure_double.create_app(resource)) as port:
        job, err = retrain(capsys, "azure", f"http://127.0.0.1:{port}/openai/v1",
                           "--existing-customer")
    assert "base model on azure: gpt-4o-mini-2024-07-18 (Azure OpenAI trains the same" in err
    body = resource.bodies[0]
    assert body["model"] == "gpt-4o-mini-2024-07-18" and body["suffix"] == "natasha"
    assert body["method"]["supervised"]["hyperparameters"] == {
        "n_epochs": 3, "batch_size": 1, "learning_rate_multiplier": 1.8}
    linked_and_shown(capsys, job["id"], "azure gpt-4o-mini-2024-07-18")
