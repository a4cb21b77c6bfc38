"""What a checkpoint holds besides the weights, and how resume reads it back.

A checkpoint folder: `adapter/` (LoRA, loadable with peft) or `model/` (full fine-tune,
loadable with transformers), `optimizer.pt`, `scheduler.pt`, `rng.pt` (python, numpy and
torch generators), `state.json` (step, epoch and the exact data position) and
`hparams.json` (the resolved config, as litgpt saves next to every checkpoint).
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tunelab.registry.metrics import LEGACY_SUMMARY_NAMES


@dataclass
class TrainState:
    """Where a run is; loss and accuracy fields are named as in registry/metrics.py."""

    step: int = 0  # optimizer steps done
    epoch: int = 0  # the epoch in progress (0-based)
    batches_done: int = 0  # micro-batches of this epoch already consumed, by all processes
    loss_sum: float = 0.0  # sum of every step's loss: train_loss is its mean, as HF reports
    last_train_loss: float | None = None  # the last step's
    train_accuracy: float | None = None  # the last step's train_mean_token_accuracy
    best_valid_loss: float | None = None
    valid_loss: float | None = None  # the last validation's
    valid_accuracy: float | None = None  # the last validation's valid_mean_token_accuracy
    trained_tokens: int = 0  # real (non-padding) tokens trained on
    train_seconds: float = 0.0  # time spent in training steps, excluding eval and saves

    @property
    def train_loss(self) -> float | None:
        return self.loss_sum / self.step if self.step else None

    @property
    def tokens_per_s(self) -> float | None:
        return self.trained_tokens / self.train_seconds if self.train_seconds else None


def save_training_state(folder: Path, *, optimizer: Any, scheduler: Any, state: TrainState,
                        hparams: dict[str, Any]) -> None:
    torch.save(optimizer.state_dict(), folder / "optimizer.pt")
    torch.save(scheduler.state_dict(), folder / "scheduler.pt")
    torch.save(capture_rng(), folder / "rng.pt")
    (folder / "state.json").write_text(json.dumps(asdict(state), indent=2))
    (folder / "hparams.json").write_text(json.dumps(hparams, indent=2, ensure_ascii=False))


def load_training_state(folder: Path) -> TrainState:
    """A checkpoint's state; one written before the metric vocabulary (last_loss, tokens...)
    resumes too, its fields renamed."""
    saved = json.loads((folder / "state.json").read_text())
    return TrainState(**{LEGACY_SUMMARY_NAMES.get(key, key): value
                         for key, value in saved.items()})


def load_torch(folder: Path, name: str) -> Any:
    return torch.load(folder / name, map_location="cpu", weights_only=True)


def capture_rng() -> dict[str, Any]:
    """Every generator training may draw from, in a form torch.load(weights_only) accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (kind, keys.tolist(), pos, has_gauss, cached),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng(states: dict[str, Any]) -> None:
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
