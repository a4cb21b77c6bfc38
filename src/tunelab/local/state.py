"""What a checkpoint holds besides the weights, and how resume reads it back.

A checkpoint folder: `adapter/` (LoRA, loadable with peft) or `model/` (full fine-tune,
loadable with transformers), `optimizer.pt`, `scheduler.pt`, `rng.pt` (python, numpy and
torch generators), `state.json` (step, epoch and the exact data position) and
`hparams.json` (the resolved config, as litgpt saves next to every checkpoint).

`checkpoint_problem` says whether a folder can be resumed from before anything loads it, so
a damaged checkpoint is passed over for an older one instead of failing the job halfway.
"""

from __future__ import annotations

import json
import random
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tunelab.registry.metrics import LEGACY_SUMMARY_NAMES, TRAIN_ACCURACY, VALID_ACCURACY


@dataclass
class TrainState:
    """Where a run is; loss and accuracy fields are named as in registry/metrics.py."""

    step: int = 0  # optimizer steps done
    epoch: int = 0  # the epoch in progress (0-based)
    batches_done: int = 0  # micro-batches of this epoch already consumed, by all processes
    loss_sum: float = 0.0  # sum of every step's loss: train_loss is its mean, as HF reports
    last_train_loss: float | None = None  # the last step's
    train_metrics: dict[str, float] = field(default_factory=dict)  # the method's, last step
    best_valid_loss: float | None = None
    stale_evals: int = 0  # validations in a row without a new best (early stopping)
    valid_loss: float | None = None  # the last validation's
    valid_metrics: dict[str, float] = field(default_factory=dict)  # the method's, last one
    trained_tokens: int = 0  # real (non-padding) tokens trained on
    train_seconds: float = 0.0  # time spent in training steps, excluding eval and saves

    @property
    def train_loss(self) -> float | None:
        return self.loss_sum / self.step if self.step else None

    @property
    def tokens_per_s(self) -> float | None:
        return self.trained_tokens / self.train_seconds if self.train_seconds else None

    # The job summary's accuracies (supervised runs; None for a method without them).
    @property
    def train_accuracy(self) -> float | None:
        return self.train_metrics.get(TRAIN_ACCURACY)

    @property
    def valid_accuracy(self) -> float | None:
        return self.valid_metrics.get(VALID_ACCURACY)


def save_training_state(folder: Path, *, optimizer: Any, scheduler: Any, state: TrainState,
                        hparams: dict[str, Any]) -> None:
    torch.save(optimizer.state_dict(), folder / "optimizer.pt")
    torch.save(scheduler.state_dict(), folder / "scheduler.pt")
    torch.save(capture_rng(), folder / "rng.pt")
    (folder / "state.json").write_text(json.dumps(asdict(state), indent=2))
    (folder / "hparams.json").write_text(json.dumps(hparams, indent=2, ensure_ascii=False))


def load_training_state(folder: Path) -> TrainState:
    """A checkpoint's state; one written before the metric vocabulary (last_loss, tokens...)
    or before training methods (train_accuracy beside the losses) resumes too."""
    saved = json.loads((folder / "state.json").read_text())
    values = {LEGACY_SUMMARY_NAMES.get(key, key): value for key, value in saved.items()}
    for legacy, (kept_in, name) in LEGACY_ACCURACIES.items():
        accuracy = values.pop(legacy, None)
        if accuracy is not None:
            values.setdefault(kept_in, {})[name] = accuracy
    return TrainState(**values)


# A supervised run's accuracies, as state.json kept them before methods had metrics.
LEGACY_ACCURACIES = {"train_accuracy": ("train_metrics", TRAIN_ACCURACY),
                     "valid_accuracy": ("valid_metrics", VALID_ACCURACY)}


# The files besides the weights that resume reads (trainer.setup, trainer.restore_position).
TRAINING_FILES = ("optimizer.pt", "scheduler.pt", "rng.pt")


def checkpoint_problem(folder: Path, *, full: bool) -> str | None:
    """Why resume cannot start from `folder`, or None when every file it reads is present
    and reads back: state.json parses, each torch archive's checksums match (read, not
    unpickled: an optimizer can be gigabytes), and the weights' safetensors headers cover
    their files (a truncated copy fails here)."""
    try:
        load_training_state(folder)
    except FileNotFoundError:
        return "state.json is missing"
    except (OSError, ValueError, TypeError) as error:
        return f"state.json does not read back ({type(error).__name__})"
    for name in TRAINING_FILES:
        problem = _archive_problem(folder / name)
        if problem:
            return f"{name} {problem}"
    return _weights_problem(folder, full)


def _archive_problem(path: Path) -> str | None:
    if not path.is_file():
        return "is missing"
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (OSError, zipfile.BadZipFile, EOFError):
        return "is not a complete torch file"
    return f"is damaged (bad checksum in {bad})" if bad else None


def _weights_problem(folder: Path, full: bool) -> str | None:
    from safetensors import SafetensorError, safe_open

    if full:  # a whole HF model folder (trainer.build_model loads it with transformers)
        weights = folder / "model"
        if not (weights / "config.json").is_file():
            return "model/config.json is missing"
        files = sorted(weights.glob("*.safetensors"))
    else:
        files = [folder / "adapter" / "adapter_model.safetensors"]
    if not files or not all(path.is_file() for path in files):
        return f"{'model' if full else 'adapter'} weights are missing"
    for path in files:
        try:
            with safe_open(str(path), "pt"):
                pass
        except (OSError, SafetensorError) as error:
            return f"{path.relative_to(folder)} does not read back ({error})"
    return None


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
