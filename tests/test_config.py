"""TrainConfig: presets and shipped configs validate; precedence; every problem at once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tunelab.cli import main
from tunelab.config import PRESETS, TrainConfig, resolve_config
from tunelab.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
SHIPPED_CONFIGS = sorted((REPO / "configs").glob("*.y*ml")) + sorted(
    (REPO / "configs").glob("*.json"))


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_validates_and_applies(name: str) -> None:
    config = resolve_config(preset=name)
    values = PRESETS[name]["values"]
    assert config.preset == name
    assert (config.batch_size, config.epochs, config.learning_rate) == (
        values["batch_size"], values["epochs"], values["learning_rate"])
    assert PRESETS[name]["purpose"]


def test_configs_folder_is_not_empty() -> None:
    assert SHIPPED_CONFIGS, "configs/ should ship example configs"


@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=lambda path: path.name)
def test_every_shipped_config_validates(path: Path) -> None:
    config = resolve_config(config_file=path)
    for key in ("train_file", "validation_file"):
        value = getattr(config, key)
        assert value is None or (REPO / value).is_file(), f"{path.name}: {key} {value}"


@pytest.mark.parametrize("mode", ["auto", "off"])
@pytest.mark.parametrize("source", [*PRESETS, *SHIPPED_CONFIGS],
                         ids=lambda source: getattr(source, "name", source))
def test_every_preset_and_shipped_config_takes_the_kernels_switch(source, mode: str) -> None:
    if isinstance(source, Path):
        config = resolve_config(config_file=source, flags={"kernels": mode})
    else:
        config = resolve_config(preset=source, flags={"kernels": mode})
    assert config.kernels == mode


def test_kernels_default_to_auto_and_are_read_from_a_file(tmp_path: Path) -> None:
    assert TrainConfig().kernels == "auto"
    file = tmp_path / "plain.yaml"
    file.write_text("preset: quick\nkernels: off\n")  # YAML reads a bare off as False
    assert resolve_config(config_file=file).kernels == "off"
    assert resolve_config(config_file=file, flags={"kernels": "auto"}).kernels == "auto"
    with pytest.raises(ConfigError, match="--kernels: input should be 'auto' or 'off'"):
        resolve_config(flags={"kernels": "fast"})


def test_precedence_is_preset_then_file_then_flags(tmp_path: Path) -> None:
    file = tmp_path / "run.yaml"
    file.write_text(yaml.safe_dump({"preset": "standard", "epochs": 7, "batch_size": 8}))
    config = resolve_config(preset="quick", config_file=file, flags={"batch_size": 3,
                                                                     "lora_r": None})
    assert config.preset == "quick"  # the flag's preset beats the file's
    assert config.learning_rate == PRESETS["quick"]["values"]["learning_rate"]
    assert config.epochs == 7  # file beats preset
    assert config.batch_size == 3  # flag beats file
    assert config.lora_r == TrainConfig().lora_r  # a flag left unset changes nothing


def test_every_problem_is_reported_at_once_naming_flag_or_key(tmp_path: Path) -> None:
    file = tmp_path / "bad.json"
    file.write_text(json.dumps({"lr": 0.1, "epochs": "many"}))
    with pytest.raises(ConfigError) as caught:
        resolve_config(config_file=file, flags={"batch_size": 0, "eval_every": 5,
                                                "precision": "fp8"})
    problems = "\n".join(caught.value.problems)
    assert len(caught.value.problems) == 5, problems
    assert "--batch-size" in problems and "--precision" in problems
    assert "--eval-every: needs a validation file" in problems
    assert "key 'epochs' in" in problems
    assert "key 'lr' in" in problems and "did you mean 'learning_rate'" in problems


def test_unknown_preset_is_named() -> None:
    with pytest.raises(ConfigError, match="--preset: unknown preset 'turbo'"):
        resolve_config(preset="turbo")


def test_cli_reports_bad_flags_before_loading_anything(tmp_path: Path, capsys,
                                                       tunelab_home: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text('{"messages": [{"role": "user", "content": "hi"}, '
                    '{"role": "assistant", "content": "hello"}]}\n')
    code = main(["train", str(data), "--epochs", "0", "--learning-rate", "-1",
                 "--validation-file", str(tmp_path / "missing.jsonl")])
    err = capsys.readouterr().err
    assert code == 2
    assert "--epochs" in err and "--learning-rate" in err
    assert not (tunelab_home / "registry.sqlite").exists()


def test_missing_files_are_reported_together(tmp_path: Path, capsys) -> None:
    code = main(["train", str(tmp_path / "nope.jsonl"), "--validation-file",
                 str(tmp_path / "nada.jsonl")])
    err = capsys.readouterr().err
    assert code == 2
    assert "nope.jsonl does not exist" in err and "nada.jsonl does not exist" in err


def test_save_config_writes_resolved_config_and_refuses_to_overwrite(tmp_path: Path,
                                                                     capsys) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text("{}\n")
    target = tmp_path / "saved.yaml"
    args = ["train", str(data), "--preset", "standard", "--epochs", "5",
            "--save-config", str(target)]
    assert main(args) == 0
    saved = yaml.safe_load(target.read_text())
    assert saved["epochs"] == 5 and saved["batch_size"] == 4 and saved["preset"] == "standard"
    assert not any(word in name for name in saved for word in ("api_key", "secret", "password"))
    assert resolve_config(config_file=target) == resolve_config(
        preset="standard", flags={"epochs": 5, "train_file": str(data)})
    capsys.readouterr()
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err
    assert main([*args, "--force"]) == 0


def test_presets_command_lists_every_preset(capsys) -> None:
    assert main(["presets", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)["presets"]
    assert set(shown) == set(PRESETS)
    assert all({"purpose", "values", "measured"} <= set(row) for row in shown.values())


def test_presets_show_what_the_measured_ones_cost_and_gained(capsys, monkeypatch) -> None:
    """Time, tokens/s and held-out loss against the base, from the measurement data; a
    preset nobody measured says so rather than showing a blank or a guess."""
    monkeypatch.setenv("COLUMNS", "160")
    capsys.readouterr()
    assert main(["presets"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()
            if line.split() and line.split()[0] in PRESETS}
    assert set(rows) == set(PRESETS)
    assert PRESETS["standard"]["measured"], "standard must carry its measurement"
    for name, preset in PRESETS.items():
        measured = preset["measured"]
        if not measured:
            assert "not measured" in rows[name]
            continue
        change = (measured["heldout_loss"] / measured["base_heldout_loss"] - 1) * 100
        assert f"{measured['minutes']:.1f} min" in rows[name]
        assert f"{measured['tokens_per_s']:.0f}" in rows[name]
        assert f"{measured['heldout_loss']:.3f} ({change:+.1f}% vs " in rows[name]


def test_a_seed_numpy_cannot_take_is_refused_with_the_settings() -> None:
    """A seed over 2**32-1 used to pass the checks and the dry run, then fail the run after
    the model had loaded (numpy's seeds are 32-bit)."""
    from tunelab.config import validate_config

    with pytest.raises(ConfigError, match="seed"):
        validate_config({"train_file": "x.jsonl", "seed": 2**70})
    assert validate_config({"train_file": "x.jsonl", "seed": 2**32 - 1}).seed == 2**32 - 1


def test_a_pattern_in_a_config_error_keeps_its_case() -> None:
    from tunelab.config import validate_config

    with pytest.raises(ConfigError) as caught:
        validate_config({"train_file": "x.jsonl", "suffix": "bad suffix!"})
    assert "A-Za-z" in " ".join(caught.value.problems)
