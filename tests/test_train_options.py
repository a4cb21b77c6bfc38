"""`tunelab train` parses its flags once into a typed TrainOptions; the TrainConfig flags
(--kernels among them) reach the resolved config, and nothing is trained here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from faultproxy import dialogues
from tunelab.cli import main
from tunelab.cli.config_flags import TrainingFlags


def test_config_flags_keep_only_what_was_given() -> None:
    flags = TrainingFlags.every(leave_out=("train_file", "preset"))
    given = {param.name: None for param in flags.parameters()}
    given.update(config__epochs=3, config__validation_file=Path("v.jsonl"),
                 config__kernels="off", config__target_modules="q_proj, v_proj")
    assert flags.collect(given) == {"epochs": 3, "validation_file": "v.jsonl", "kernels": "off",
                                    "target_modules": ["q_proj", "v_proj"]}
    assert flags.collect({"config__target_modules": "all-linear"}) == {
        "target_modules": "all-linear"}


def test_kernels_flag_reaches_the_saved_config(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    train = dialogues(tmp_path / "train.jsonl")
    saved = tmp_path / "run.json"
    assert main(["train", str(train), "--preset", "quick", "--kernels", "off", "--epochs", "2",
                 "--save-config", str(saved)]) == 0
    config = json.loads(saved.read_text())
    assert (config["kernels"], config["epochs"], config["preset"]) == ("off", 2, "quick")
    assert "tunelab train" in capsys.readouterr().out
    assert main(["train", str(train), "--kernels", "sideways", "--save-config",
                 str(tmp_path / "bad.json")]) == 2
    assert "kernels" in capsys.readouterr().err
