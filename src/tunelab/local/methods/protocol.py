"""What a training method is to the loop: the Protocol every method meets, and what it measures.

The loop (trainer.py) owns the order of things: batches, gradient accumulation, the
optimizer and scheduler, validation, early stopping, checkpoints. A method owns what is
learned from the examples: how they become tokens, how a batch is put together, the loss
and its metrics, and what validation measures. Adding a method adds a class; the loop does
not change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # torch loads only when something trains, not when data is encoded
    import torch
    from torch import nn

    from tunelab.config import KernelMode, TrainConfig
    from tunelab.local.encoding import EncodedSet


@dataclass(frozen=True)
class Measured:
    """What an optimizer step or a validation measured: the loss the run goes by (train_loss,
    or valid_loss: the one `best` and early stopping use), and the method's own metrics
    beside it, by their names in the vocabulary (registry/metrics.py)."""

    loss: float
    metrics: dict[str, float]


class Method(Protocol):
    """A training method, handed to trainer.setup.

    Metric names are the vocabulary's (registry/metrics.py): the registry keeps no other, so
    a new method's metrics join the vocabulary first. trainer.setup refuses any other name.
    """

    name: str  # TrainConfig.method
    train_metric_names: tuple[str, ...]  # what train_metrics returns, besides train_loss
    valid_metric_names: tuple[str, ...]  # what validate returns, besides valid_loss

    def read(self, path: str) -> list[dict]:
        """Every example of a data file in this method's format (supervised: chats, DPO:
        preference rows), or DataError naming the first bad line."""
        ...

    def encode(self, tokenizer: Any, examples: list[dict], *, max_length: int | None,
               source: str) -> EncodedSet:
        """The examples as token items; `max_length` None: whole (validation, see
        validation.py). Its `lengths` order the batches (batching.py)."""
        ...

    def collate(self, items: list[Any], pad_id: int) -> dict[str, torch.Tensor]:
        """One batch of encoded items as tensors. Its `attention_mask` counts the tokens
        trained on (trained_tokens, tokens/s)."""
        ...

    def loss_module(self, model: nn.Module, kernels: KernelMode) -> tuple[nn.Module, str]:
        """The module the run trains through (accelerate prepares it: DDP, autocast), built
        around `model` with the speed kernels `kernels` allows (local/kernels/) and keeping
        it as `.model` (checkpoints save it from there), and one line for the run's log:
        which kernels run, or why none do."""
        ...

    def prepare(self, loss_module: nn.Module, sets: list[EncodedSet], *,
                config: TrainConfig, pad_id: int, fresh: bool) -> str | None:
        """What the method computes once before the first step, on the training and
        validation sets (DPO: the reference model's log-probabilities), with `loss_module`
        as `loss_module()` built it; `fresh`: the model is still the one training starts
        from (no checkpoint was loaded). One line for the run's log, or None."""
        ...

    def loss(self, loss_module: nn.Module, batch: dict[str, torch.Tensor],
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One micro-batch through `loss_module` as accelerate prepared it: the mean loss to
        backpropagate, and 0-d tensors whose sums over the step's micro-batches and
        processes `train_metrics` turns into the step's metrics (sums, so means are exact)."""
        ...

    def train_metrics(self, sums: dict[str, float]) -> dict[str, float]:
        """One optimizer step's metrics, named train_metric_names, from what `loss` summed."""
        ...

    def validate(self, loss_module: nn.Module, encoded: EncodedSet, pad_id: int) -> Measured:
        """The validation loss and the valid_metric_names metrics of `loss_module` (not
        accelerate's wrapper) on `encoded`, as encode(max_length=None) made it."""
        ...
