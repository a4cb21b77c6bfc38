"""The training loss as transformers + peft compute it: the reference every kernel matches.

The model's own forward gives logits for every position; cross-entropy is taken on the
positions whose next token is a label (assistant tokens, see encoding.py), summed, and
divided by their count. This is what `kernels: off` trains with, and what
`kernels/chunked_loss.py` computes without materialising those logits.

It is an nn.Module so that accelerate can wrap it (DDP hooks, autocast) like any model.
"""

from __future__ import annotations

import torch
from torch import nn

from tunelab.local.encoding import IGNORE


class AssistantLoss(nn.Module):
    """forward(input_ids, attention_mask, labels) -> mean loss over labelled tokens."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                labels: torch.Tensor) -> torch.Tensor:
        summed, count = self.loss_sum(input_ids, attention_mask, labels)
        return summed / count.clamp(min=1)

    def loss_sum(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(summed token loss, number of labelled tokens): for exact token-weighted means."""
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask,
                            use_cache=False).logits
        targets = labels[:, 1:]
        # fp32 logits as transformers' own causal-LM loss upcasts them (bf16 blurs the loss).
        summed = nn.functional.cross_entropy(
            logits[:, :-1].float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
            ignore_index=IGNORE, reduction="sum")
        return summed, (targets != IGNORE).sum()
