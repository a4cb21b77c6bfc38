"""`tunelab train` parses its flags once into a typed TrainOptions; the TrainConfig flags
(--kernels among them) reach the resolved config, and nothing is trained here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from faultproxy import dialogues
from tunelab.cli import main
from tunelab.cli.train_options import ConfigFlags


def test_config_flags_keep_only_what_was_given() -> None:
    flags = ConfigFlags(epochs=3, validation_file=Path("v.jsonl"), kernels="off")
    assert flags.overrides() == {"epochs": 3, "validation_file": "v.jsonl", "kernels": "off"}


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
