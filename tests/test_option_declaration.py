"""TrainConfig is the one declaration of the training options: every field is a flag of
`tunelab train` and every training flag a field; the sweep's sweepable set and the
dashboard's overrides derive from it; --help keeps its groups. Nothing is trained here."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any, get_args

import pytest
import typer

from faultproxy import dialogues
from tunelab.cli import main
from tunelab.cli.app import app
from tunelab.cli.commands import register
from tunelab.cli.sweep_cmd import sweep
from tunelab.config import (
    FLAG_NAMES,
    SAMPLES,
    SCHEDULE,
    Flag,
    TrainConfig,
    declared,
    flag_of,
    value_type,
)
from tunelab.providers import PROVIDERS
from tunelab.sweep.space import SWEEPABLE

# TrainConfig fields that are no generated flag of `tunelab train`, and why.
NOT_GENERATED = {"train_file": "the FILE argument",
                 "preset": "--preset, the command's own flag (passed apart to resolve_config)"}
# The flags of `tunelab train` that steer the command, not the TrainConfig.
COMMAND_FLAGS = {"--provider", "--preset", "--config", "--save-config", "--force", "--dry-run",
                 "--resume", "--json", "--yes", "-y", "--nproc", "--help",
                 # the cloud path's own, shared by every cloud provider
                 "--learning-rate-multiplier", "--max-cost", "--validate-only", "--upload-only",
                 "--no-wait", "--interval", "--timeout", "--base-url"}


def command(*path: str) -> Any:
    """The click command typer builds for `tunelab PATH...` (typer vendors its own click)."""
    register(app)
    found: Any = typer.main.get_command(app)
    for name in path:
        found = found.commands[name]
    return found


def spellings(found: Any) -> dict[str, str]:
    """Every option spelling of a command -> its parameter's name."""
    return {spelling: param.name or "" for param in found.params
            if param.param_type_name == "option"
            for spelling in (*param.opts, *param.secondary_opts)}


def provider_flags() -> set[str]:
    """Each provider setting's flag, and a yes/no setting's --no- form too."""
    return {prefix + key.replace("_", "-") for entry in PROVIDERS.values() if entry.settings
            for key, info in entry.settings.model_fields.items()
            for prefix in (("--", "--no-") if bool in get_args(info.annotation) else ("--",))}


def test_every_field_is_a_train_flag_and_every_train_flag_a_field_or_the_commands() -> None:
    flags = spellings(command("train"))
    declared_flags = {}
    for key in TrainConfig.model_fields:
        spelled = (flag_of(key).flag or FLAG_NAMES[key]).split("/")
        declared_flags.update(dict.fromkeys(spelled, key))
        if key in NOT_GENERATED:
            continue
        assert all(flag in flags for flag in spelled), f"{key} has no flag {spelled}"
    strays = set(flags) - set(declared_flags) - COMMAND_FLAGS - provider_flags()
    assert not strays, f"flags of tunelab train that match no TrainConfig field: {strays}"
    assert {"--full", "--lora", "--validation-file", "--learning-rate", "--warmup-ratio",
            "--target-modules", "--keep-checkpoints", "--sample-max-new-tokens"} <= set(flags)


def test_every_field_declares_its_help_and_its_group() -> None:
    for key, info in TrainConfig.model_fields.items():
        assert info.description, f"{key}: no description (its --help text)"
        assert any(isinstance(mark, Flag) for mark in info.metadata), f"{key}: no Flag marker"


def test_the_sweepable_set_and_the_dashboards_overrides_derive_from_the_declaration() -> None:
    from tunelab.server.dashboard.actions import OVERRIDES  # the server loads on this path only

    assert {key: value_type(key) for key in declared(sweep=True)} == SWEEPABLE
    assert {key: value_type(key) for key in declared(dashboard=True)} == OVERRIDES
    assert set(SWEEPABLE) < set(TrainConfig.model_fields)
    assert set(OVERRIDES) < set(TrainConfig.model_fields)
    assert SWEEPABLE["learning_rate"] is float and SWEEPABLE["lr_scheduler"] is str
    assert OVERRIDES["epochs"] is int
    # Each sweepable key is a flag of `tunelab sweep` taking text: a value, a list or a range;
    # the others are typed flags, as on `tunelab train`.
    sweep_flags = spellings(command("sweep"))
    parameters = inspect.signature(sweep).parameters
    for key in TrainConfig.model_fields:
        if FLAG_NAMES[key] in sweep_flags and value_type(key) in (int, float):
            taken = get_args(parameters[sweep_flags[FLAG_NAMES[key]]].annotation)[0]
            assert taken == (str if key in SWEEPABLE else value_type(key)) | None, key
    assert set(SWEEPABLE) <= {key for key in TrainConfig.model_fields
                              if FLAG_NAMES[key] in sweep_flags}
    assert "--output-dir" not in sweep_flags  # each trial has its own folder


def test_migrate_retrain_takes_the_flags_it_took_and_the_rest() -> None:
    flags = spellings(command("migrate", "retrain"))
    assert {"--base-model", "--epochs", "--batch-size", "--learning-rate", "--max-steps",
            "--max-length", "--lora-r", "--seed", "--suffix", "--output-dir", "--base-url",
            "--project-id", "--bucket", "--location", "--max-cost", "--no-wait",
            "--warmup-ratio"} <= set(flags)


def test_help_shows_the_groups(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--help"]) == 0
    shown = capsys.readouterr().out
    for group in {flag_of(key).group for key in TrainConfig.model_fields} | {"Cloud"}:
        assert f"─ {group} " in shown, group
    assert f"─ {SCHEDULE} " in shown and f"─ {SAMPLES} " in shown
    assert "Vertex AI" in shown and "--project-id" in shown
    assert "Peak LR." in shown  # the help is the field's description


def test_a_generated_flag_reaches_the_saved_config(tmp_path: Path) -> None:
    train = dialogues(tmp_path / "train.jsonl")
    saved = tmp_path / "run.json"
    assert main(["train", str(train), "--warmup-ratio", "0.1", "--lr-scheduler", "cosine",
                 "--target-modules", "q_proj,v_proj", "--max-samples", "0", "--lora",
                 "--validation-file", str(train), "--save-config", str(saved)]) == 0
    config = json.loads(saved.read_text())
    assert (config["warmup_ratio"], config["lr_scheduler"], config["target_modules"],
            config["max_samples"], config["full"], config["validation_file"]) == (
        0.1, "cosine", ["q_proj", "v_proj"], 0, False, str(train))


def test_a_bad_value_is_named_by_its_flag_with_every_other(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train = dialogues(tmp_path / "train.jsonl")
    assert main(["train", str(train), "--warmup-ratio", "2", "--lr-scheduler", "sideways",
                 "--save-config", str(tmp_path / "bad.json")]) == 2
    shown = capsys.readouterr().err
    assert "--warmup-ratio" in shown and "--lr-scheduler" in shown
    assert not (tmp_path / "bad.json").exists()
