"""Adding a provider with settings of its own is its file, one registry entry and its price
row: here a dummy provider in a temporary package, registered with one entry, gets its own
flag on `tunelab train` and its value in its own settings object, with no command edited."""

from __future__ import annotations

import importlib
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from faultproxy import dialogues
from tunelab.cli import main
from tunelab.providers import PROVIDERS, ProviderEntry, get_provider
from tunelab.providers.base import Provider, ProviderSettings

# The whole provider: its settings model (one flag per field) and a class on the contract.
# A dry run sends nothing: describe_request says what it would send, its settings included.
DUMMY = '''
from pydantic import BaseModel, ConfigDict, Field

from tunelab.providers.base import Capabilities, ProviderSettings


class DummySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dummy_flag: str | None = Field(None, description="What the dummy is told.")
    dummy_size: int = Field(2, ge=1, description="How big the dummy is.")


class DummyProvider:
    name = "dummy"
    capabilities = Capabilities()
    base_url = "http://dummy.invalid/v1"

    def __init__(self, settings: DummySettings) -> None:
        self.settings = settings

    def describe_request(self, spec):
        return {"provider": self.name, "model": spec.base_model,
                "dummy": self.settings.model_dump()}

    def upload(self, path): raise NotImplementedError
    def create_job(self, spec): raise NotImplementedError
    def get_job(self, job_id): raise NotImplementedError
    def list_jobs(self, limit=20): raise NotImplementedError
    def list_events(self, job_id, after=None): raise NotImplementedError
    def list_checkpoints(self, job_id): raise NotImplementedError
    def cancel(self, job_id): raise NotImplementedError
    def chat(self, model, messages, options=None): raise NotImplementedError
    def download_weights(self, job_id, kind, dest): raise NotImplementedError


def build(settings: ProviderSettings) -> DummyProvider:
    return DummyProvider(settings.own_as(DummySettings))
'''
PRICE = {"provider": "dummy", "model": "dummy-1", "training_per_1m": 2.0, "input_per_1m": 0.1,
         "output_per_1m": 0.2, "max_train_tokens": 4096, "as_of": "2026-12-01",
         "source": "https://dummy.invalid/pricing"}


@pytest.fixture
def dummy(tmp_path: Path, tunelab_home: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The dummy package on sys.path, its one registry entry, its price row."""
    package = tmp_path / "plugins" / "tunelab_dummy"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(DUMMY), encoding="utf-8")
    monkeypatch.syspath_prepend(str(package.parent))
    module = importlib.import_module("tunelab_dummy")
    monkeypatch.setitem(PROVIDERS, "dummy",
                        ProviderEntry(module.build, module.DummySettings, "Dummy"))
    tunelab_home.mkdir(parents=True, exist_ok=True)
    (tunelab_home / "pricing.json").write_text(json.dumps({"models": [PRICE]}),
                                               encoding="utf-8")
    yield module
    sys.modules.pop("tunelab_dummy", None)


def test_the_dummy_flag_reaches_the_dummy_settings(
        dummy: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train = dialogues(tmp_path / "train.jsonl")
    assert main(["train", str(train), "--provider", "dummy", "--model", "dummy-1",
                 "--dummy-flag", "X", "--dry-run", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["provider"] == "dummy" and shown["model"] == "dummy-1"
    assert shown["dummy"] == {"dummy_flag": "X", "dummy_size": 2}  # given, and its default
    assert shown["cost"]["dollars"] is not None  # priced from its row


def test_the_dummy_flags_are_in_help_under_its_panel(
        dummy: Any, capsys: pytest.CaptureFixture[str]) -> None:
    for command in (["train"], ["sweep"], ["migrate", "retrain"], ["jobs", "list"]):
        assert main([*command, "--help"]) == 0
        shown = capsys.readouterr().out
        assert "─ Dummy " in shown and "--dummy-flag" in shown and "--dummy-size" in shown


def test_a_bad_value_and_a_flag_of_another_provider_are_refused_by_name(
        dummy: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train = dialogues(tmp_path / "train.jsonl")
    assert main(["train", str(train), "--provider", "dummy", "--model", "dummy-1",
                 "--dummy-size", "0", "--dry-run"]) == 2
    assert "--dummy-size" in capsys.readouterr().err
    assert main(["train", str(train), "--provider", "openai", "--dummy-flag", "X",
                 "--dry-run"]) == 2
    shown = capsys.readouterr().err
    assert "--dummy-flag" in shown and "--provider dummy" in shown
    assert main(["train", str(train), "--provider", "dummy", "--project-id", "p",
                 "--dry-run"]) == 2
    assert "--provider vertex" in capsys.readouterr().err


def test_get_provider_hands_the_factory_its_own_settings(dummy: Any) -> None:
    provider = get_provider("dummy", ProviderSettings(own=dummy.DummySettings(dummy_size=5)))
    assert isinstance(provider, Provider)
    assert provider.settings.dummy_size == 5
    assert get_provider("dummy").settings == dummy.DummySettings()  # no flags: its defaults


def test_a_setting_named_like_a_commands_flag_is_said_at_once(
        dummy: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import BaseModel, Field

    class Clashing(BaseModel):
        timeout: float | None = Field(None, description="Shadows the shared --timeout.")

    monkeypatch.setitem(PROVIDERS, "clash", ProviderEntry(dummy.build, Clashing, "Clash"))
    with pytest.raises(TypeError, match="--timeout is declared twice"):
        main(["train", "--help"])
