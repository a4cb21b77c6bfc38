"""The trainer's speed kernels, behind one switch: `apply(model, mode)`.

Each kernel computes what transformers + peft compute (tests/test_train_kernels.py checks
values and gradients against the plain code) with fewer passes over memory:

    gated_mlp.py     silu(gate) * up without keeping silu(gate) for backward
    lora_linear.py   a peft LoRA linear as two matrix products accumulating in place
    rms_norm.py      RMSNorm in one autograd node
    chunked_loss.py  the loss on labelled positions only, projection and cross-entropy fused
                     in chunks ("chunked_loss"), and sdpa's causal kernel for right-padded
                     batches ("causal_padding", part of that loss)

`apply` is the only way in; the trainer calls it once per run, on the model it trains.
- "off": plain transformers + peft. No forward is replaced, and the loss is the model's own
  logits through the usual cross-entropy over assistant tokens (assistant_loss.py).
- "auto": every kernel, on the architectures they were written and tested for; any other
  architecture runs as "off". The kernels replace forwards by class name and the loss
  assumes logits are exactly lm_head(decoder(x)); a new architecture may differ in ways a
  class name does not show (soft-capped or scaled logits, another norm), so it has to be
  tested here before it joins TESTED_MODEL_TYPES.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

from torch import nn

from tunelab.config import KernelMode
from tunelab.local.assistant_loss import AssistantLoss
from tunelab.local.kernels.chunked_loss import ChunkedAssistantLoss
from tunelab.local.kernels.gated_mlp import use_fused_mlp
from tunelab.local.kernels.lora_linear import use_fused_lora
from tunelab.local.kernels.rms_norm import use_fused_rms_norm

# config.model_type values on which tests/test_train_kernels.py trains with "auto" and
# "off" and gets the same losses. SmolLM2, the embedded default, is "llama".
TESTED_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3"})

# Kernels that replace module forwards in place: name -> patch(model) -> modules patched.
FORWARD_PATCHES: dict[str, Callable[[nn.Module], int]] = {
    "gated_mlp": use_fused_mlp,
    "lora_linear": use_fused_lora,
    "rms_norm": use_fused_rms_norm,
}
KERNELS = (*FORWARD_PATCHES, "chunked_loss", "causal_padding")


@dataclass(frozen=True)
class Applied:
    """What `apply` did: the loss module to train with, and what it patched."""

    loss: AssistantLoss  # forward(input_ids, attention_mask, labels) -> mean loss
    kernels: dict[str, int]  # kernel name -> how many modules it covers (1 for the loss)
    note: str  # one line for the run's log

    @property
    def names(self) -> list[str]:
        return [name for name, count in self.kernels.items() if count]


def apply(model: nn.Module, mode: KernelMode = "auto", *,
          without: Collection[str] = ()) -> Applied:
    """Patch `model` in place for `mode` and return the loss to train it with.

    `without` leaves named kernels out (the benchmark measures each one that way).
    """
    unknown = set(without) - set(KERNELS)
    if unknown:
        raise ValueError(f"unknown kernels {sorted(unknown)}; known: {', '.join(KERNELS)}")
    if mode == "off":
        return Applied(AssistantLoss(model), {}, "kernels: off (plain transformers + peft)")
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in TESTED_MODEL_TYPES:
        return Applied(AssistantLoss(model), {}, (
            f"kernels: off for model type {model_type!r}; auto uses them on "
            f"{', '.join(sorted(TESTED_MODEL_TYPES))} only"))
    counts = {name: patch(model) for name, patch in FORWARD_PATCHES.items()
              if name not in without}
    loss = _loss(model, without)
    if isinstance(loss, ChunkedAssistantLoss):
        counts.update(chunked_loss=1, causal_padding=int(loss.causal_padding))
    listed = ", ".join(f"{name} x{count}" if count > 1 else name
                       for name, count in counts.items() if count)
    return Applied(loss, counts, f"kernels: auto ({listed or 'none applied'})")


def _loss(model: nn.Module, without: Collection[str]) -> AssistantLoss:
    if "chunked_loss" in without:  # causal_padding lives in the chunked loss: off with it
        return AssistantLoss(model)
    return ChunkedAssistantLoss(model, causal_padding="causal_padding" not in without)
