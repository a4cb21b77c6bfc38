"""Training methods are a component the loop is handed (local/methods/): the config names
only the methods there are, and a method given to the trainer is the one that trains."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, get_args

import pytest
import torch

from test_train_kernels import tiny_model_folder
from tunelab.config import MethodName, TrainConfig, resolve_config
from tunelab.errors import ConfigError
from tunelab.local import trainer
from tunelab.local.encoding import IGNORE, Encoded, EncodedSet
from tunelab.local.methods import METHODS, Measured, method_for, vocabulary_problem
from tunelab.local.methods.supervised import Supervised
from tunelab.local.state import TrainState, load_training_state
from tunelab.registry.metrics import TRAIN_ACCURACY, VALID_ACCURACY


def test_the_config_refuses_a_method_there_is_not(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as flag:
        resolve_config(flags={"method": "ppo"})
    said = flag.value.render()
    assert ("--method: unknown training method (the methods are: supervised, dpo), got 'ppo'"
            in said)
    config_file = tmp_path / "run.json"
    config_file.write_text(json.dumps({"method": "DPO"}))
    with pytest.raises(ConfigError, match=r"key 'method' in .*run\.json: unknown training "
                                          r"method \(the methods are: supervised, dpo\)"):
        resolve_config(config_file=config_file)
    assert TrainConfig().method == "supervised"


def test_every_method_the_config_names_exists_and_speaks_the_vocabulary() -> None:
    assert set(METHODS) == set(get_args(MethodName))
    for name in METHODS:
        method = method_for(TrainConfig(method=name))
        assert method.name == name
        assert vocabulary_problem(method) is None


class Frozen:
    """Supervised encoding and batches, a loss that teaches nothing, and metrics of its own:
    whatever the trainer reports here came from this method, not from supervised code."""

    name = "frozen"
    train_metric_names = (TRAIN_ACCURACY,)
    valid_metric_names = (VALID_ACCURACY,)

    def __init__(self) -> None:
        self.supervised = Supervised()
        self.collated = 0
        self.validated: list[Any] = []

    def read(self, path: str) -> list[dict]:
        return self.supervised.read(path)

    def encode(self, *args: Any, **options: Any) -> EncodedSet:
        return self.supervised.encode(*args, **options)

    def prepare(self, *args: Any, **options: Any) -> str | None:
        return self.supervised.prepare(*args, **options)

    def collate(self, items: list[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
        self.collated += 1
        return self.supervised.collate(items, pad_id)

    def loss_module(self, model: torch.nn.Module, kernels: Any) -> tuple[torch.nn.Module, str]:
        module, _ = self.supervised.loss_module(model, kernels)
        return module, "kernels: as supervised, frozen"

    def loss(self, loss_module: torch.nn.Module,
             batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss, _ = self.supervised.loss(loss_module, batch)
        return loss * 0, {"rows": torch.tensor(batch["input_ids"].shape[0])}

    def train_metrics(self, sums: dict[str, float]) -> dict[str, float]:
        return {TRAIN_ACCURACY: sums["rows"] * 100.0}  # no accuracy could be this

    def validate(self, loss_module: torch.nn.Module, encoded: EncodedSet,
                 pad_id: int) -> Measured:
        self.validated.append(loss_module)
        return Measured(7.5, {VALID_ACCURACY: float(len(encoded.items))})


class Heard(trainer.Hooks):
    def __init__(self) -> None:
        self.steps: list[trainer.StepReport] = []
        self.validations: list[Measured] = []

    def on_step(self, state: TrainState, report: trainer.StepReport) -> None:
        self.steps.append(report)

    def on_validation(self, state: TrainState, result: Measured, is_best: bool) -> None:
        self.validations.append(result)


def chats(count: int, seed: int) -> EncodedSet:
    generator = torch.Generator().manual_seed(seed)
    items = []
    for _ in range(count):
        ids = torch.randint(3, 96, (int(torch.randint(8, 20, (1,), generator=generator)),),
                            generator=generator).tolist()
        items.append(Encoded(ids, [IGNORE] * 4 + ids[4:]))
    return EncodedSet(items=items, source_count=count)


def test_the_method_handed_to_the_trainer_is_the_one_that_trains(tmp_path: Path) -> None:
    folder = tiny_model_folder(tmp_path / "model", "llama")
    config = TrainConfig(model=str(folder), learning_rate=1e-2, warmup_ratio=0.0, epochs=1,
                         batch_size=3, seed=5, lora_r=4, lora_alpha=8, save_every=None,
                         validation_file="held-out.jsonl")
    frozen, heard = Frozen(), Heard()
    session = trainer.setup(config, SimpleNamespace(pad_token_id=0), chats(6, seed=1),
                            chats(2, seed=2), base_ref=str(folder), method=frozen)
    assert session.method is frozen and session.kernels == "kernels: as supervised, frozen"

    outcome = trainer.train(session, TrainState(), heard, tmp_path / "run")

    assert outcome == "succeeded" and frozen.collated == 2  # 6 examples in batches of 3
    assert [report.train_loss for report in heard.steps] == [0.0, 0.0]
    assert [report.values()[TRAIN_ACCURACY] for report in heard.steps] == [300.0, 300.0]
    assert heard.steps[0].metrics()[TRAIN_ACCURACY] == 300.0  # what the registry keeps
    # A zero loss has zero gradients: LoRA's B stays at its initial zeros.
    lora_b = [param for name, param in session.model.named_parameters() if "lora_B" in name]
    assert lora_b and all(bool((param == 0).all()) for param in lora_b)
    # Validated by the method, on the model itself rather than accelerate's wrapper.
    assert heard.validations == [Measured(7.5, {VALID_ACCURACY: 2.0})]
    assert frozen.validated == [session.accelerator.unwrap_model(session.loss_model)]


def test_the_supervised_method_trains_where_the_frozen_one_does_not(tmp_path: Path) -> None:
    # The other side of the test above: the same run with the default method moves B.
    folder = tiny_model_folder(tmp_path / "model", "llama")
    config = TrainConfig(model=str(folder), learning_rate=1e-2, warmup_ratio=0.0, epochs=1,
                         batch_size=3, seed=5, lora_r=4, lora_alpha=8, save_every=None)
    heard = Heard()
    session = trainer.setup(config, SimpleNamespace(pad_token_id=0), chats(6, seed=1), None,
                            base_ref=str(folder))
    trainer.train(session, TrainState(), heard, tmp_path / "run")
    assert isinstance(session.method, Supervised)
    assert all(report.train_loss > 0 for report in heard.steps)
    assert all(0 <= report.values()[TRAIN_ACCURACY] <= 1 for report in heard.steps)
    lora_b = [param for name, param in session.model.named_parameters() if "lora_B" in name]
    assert any(bool(param.abs().sum() > 0) for param in lora_b)


def test_a_method_whose_metrics_are_not_in_the_vocabulary_is_refused(tmp_path: Path) -> None:
    class Unheard(Frozen):
        train_metric_names = ("reward_margin",)

    config = TrainConfig(model=str(tmp_path / "never-loaded"))
    with pytest.raises(ValueError, match="method 'frozen' reports metrics outside the "
                                         r"vocabulary \(registry/metrics.py\): reward_margin"):
        trainer.setup(config, None, EncodedSet(), None, base_ref="x", method=Unheard())


def test_a_checkpoint_from_before_methods_resumes_with_its_accuracies(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text(json.dumps({
        "step": 4, "epoch": 1, "batches_done": 0, "loss_sum": 8.0, "last_train_loss": 1.5,
        "train_accuracy": 0.25, "valid_loss": 1.75, "valid_accuracy": None}))
    state = load_training_state(tmp_path)
    assert state.train_metrics == {TRAIN_ACCURACY: 0.25} and state.valid_metrics == {}
    assert (state.train_accuracy, state.valid_accuracy) == (0.25, None)
    assert state.step == 4 and state.valid_loss == 1.75
