"""Supervised fine-tuning: next-token cross-entropy on the assistant turns of chats.

OpenAI's "supervised" method. Encoding puts labels on assistant tokens only (encoding.py),
batches are right-padded (batching.collate), the loss is the mean over labelled tokens:
the chunked kernel where the speed kernels run (kernels/chunked_loss.py), the plain one
elsewhere (assistant_loss.py). Validation is validation.py's whole-file loss, the number
`compare` gives too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tunelab.local.batching import collate
from tunelab.local.encoding import EncodedSet, encode_examples
from tunelab.local.methods.protocol import Measured
from tunelab.local.validation import encode_validation, measure_validation
from tunelab.registry.metrics import TRAIN_ACCURACY, VALID_ACCURACY

if TYPE_CHECKING:
    import torch
    from torch import nn

    from tunelab.config import KernelMode, TrainConfig


class Supervised:
    name = "supervised"
    train_metric_names = (TRAIN_ACCURACY,)
    valid_metric_names = (VALID_ACCURACY,)

    def read(self, path: str) -> list[dict]:
        from tunelab.data.reader import load_examples

        return load_examples(path)

    def encode(self, tokenizer: Any, examples: list[dict], *, max_length: int | None,
               source: str) -> EncodedSet:
        if max_length is None:
            return encode_validation(tokenizer, examples, source)
        return encode_examples(tokenizer, examples, max_length, source)

    def collate(self, items: list[Any], pad_id: int) -> dict[str, torch.Tensor]:
        return collate(items, pad_id)

    def loss_module(self, model: nn.Module, kernels: KernelMode) -> tuple[nn.Module, str]:
        # Looked up at call time: the benchmark swaps kernels.apply to leave kernels out.
        from tunelab.local import kernels as speed

        applied = speed.apply(model, kernels)
        return applied.loss, applied.note

    def prepare(self, loss_module: nn.Module, sets: list[EncodedSet], *,
                config: TrainConfig, pad_id: int, fresh: bool) -> str | None:
        return None  # nothing beyond the examples themselves

    def loss(self, loss_module: nn.Module, batch: dict[str, torch.Tensor],
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        from accelerate.utils import extract_model_from_parallel

        loss = loss_module(**batch)  # through accelerate's wrapper: DDP syncs gradients there
        sums = extract_model_from_parallel(loss_module).last  # what that forward counted
        return loss, {"correct": sums.correct, "labelled": sums.count}

    def train_metrics(self, sums: dict[str, float]) -> dict[str, float]:
        return {TRAIN_ACCURACY: sums["correct"] / max(1, sums["labelled"])}

    def validate(self, loss_module: nn.Module, encoded: EncodedSet, pad_id: int) -> Measured:
        result = measure_validation(loss_module, encoded, pad_id)
        return Measured(result.loss, {VALID_ACCURACY: result.accuracy})
