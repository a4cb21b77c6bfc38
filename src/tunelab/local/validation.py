"""Validation loss: one function, used by the trainer and by `compare`, so one file gives one
number.

The loss is the mean cross-entropy over every assistant token of the file (token-weighted,
not a mean of per-example means), labelled exactly as training labels them (encoding.py:
the model's chat template, the closing end-of-turn token included, `weight: 0` turns
skipped). `valid_mean_token_accuracy` is the share of those tokens whose argmax is the label.

Validation examples are NOT cut at the run's `max_length`. That limit trades context for
training memory; a measurement has no backward pass to pay for, and cutting would silently
drop the ends of long conversations (a quarter of the assistant tokens of
examples/natasha_val.jsonl at max_length 512), make the number depend on a training
setting that `compare` cannot know, and score two runs with different max lengths on
different tokens. Only the model's own context window cuts an example. This was the gap
between the old `train --preset standard` (2.321, cut at 512) and `compare` (2.208, whole) on
natasha_val: the base model scores 2.7965 cut and 2.6524 whole, the same 5%.

It runs without autocast, in the weights' dtype (fp32 here), whatever precision trained
them, and batches by a token budget, longest first: the same batches for the same file
whichever command asks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tunelab.local.batching import collate
from tunelab.local.encoding import Encoded, EncodedSet, encode_examples

if TYPE_CHECKING:  # torch loads only when something is measured, not when data is encoded
    from tunelab.local.assistant_loss import AssistantLoss

# Padded tokens per validation batch. Batches are sorted by length, so padding is small;
# the budget bounds activation memory without a backward pass to keep them for.
BATCH_TOKENS = 4096
UNLIMITED = 1 << 62  # encode_examples' max_length when nothing but the model should cut


@dataclass(frozen=True)
class Validation:
    """A model's validation loss and token accuracy on one file."""

    loss: float  # mean over every assistant token (token-weighted)
    accuracy: float  # share of those tokens whose argmax is the label
    tokens: int  # how many assistant tokens were scored


def encode_validation(tokenizer: Any, examples: list[dict], source: str) -> EncodedSet:
    """Validation examples as tokens and labels, whole (see the module docstring)."""
    return encode_examples(tokenizer, examples, UNLIMITED, source)


def measure_validation(loss_model: AssistantLoss, encoded: EncodedSet, pad_id: int) -> Validation:
    """The loss and accuracy of `loss_model`'s model over every assistant token of `encoded`."""
    import torch

    items = within_context(encoded.items, context_length(loss_model.model))
    device = next(loss_model.parameters()).device
    loss, correct, count = 0.0, 0, 0
    # The wrapped model's mode, not the wrapper's: a chat model stays in eval mode after.
    was_training = loss_model.model.training
    loss_model.eval()  # no LoRA dropout while measuring
    try:
        with torch.no_grad(), torch.autocast(device_type=device.type, enabled=False):
            for batch_items in token_batches(items, BATCH_TOKENS):
                batch = {key: value.to(device)
                         for key, value in collate(batch_items, pad_id).items()}
                sums = loss_model.loss_sum(**batch)
                loss += float(sums.loss)
                correct += int(sums.correct)
                count += int(sums.count)
    finally:
        loss_model.train(was_training)
    return Validation(loss / max(1, count), correct / max(1, count), count)


def loss_for(model: Any) -> AssistantLoss:
    """The loss module to measure a model that is not training (`compare`) with: the chunked
    loss, which never holds a batch's logits, on the architectures `kernels.apply` trusts it
    with, else the plain one. Neither patches the model."""
    from tunelab.local.assistant_loss import AssistantLoss
    from tunelab.local.kernels import TESTED_MODEL_TYPES
    from tunelab.local.kernels.chunked_loss import ChunkedAssistantLoss

    if getattr(getattr(model, "config", None), "model_type", None) in TESTED_MODEL_TYPES:
        return ChunkedAssistantLoss(model)
    return AssistantLoss(model)


def context_length(model: Any) -> int | None:
    """The longest sequence the model's positions cover, if its config says."""
    return getattr(getattr(model, "config", None), "max_position_embeddings", None)


def within_context(items: Sequence[Encoded], limit: int | None) -> list[Encoded]:
    if limit is None:
        return list(items)
    return [Encoded(item.input_ids[:limit], item.labels[:limit]) for item in items]


def token_batches(items: Sequence[Encoded], max_tokens: int) -> list[list[Encoded]]:
    """Longest first; each batch as many examples as fit `max_tokens` once padded (>= 1)."""
    ordered = sorted(items, key=len, reverse=True)
    batches: list[list[Encoded]] = []
    for item in ordered:
        # The batch's width is its first (longest) item's length.
        if batches and (len(batches[-1]) + 1) * len(batches[-1][0]) <= max_tokens:
            batches[-1].append(item)
        else:
            batches.append([item])
    return batches
