"""The training loss as transformers + peft compute it: the reference every kernel matches.

The model's own forward gives logits for every position; cross-entropy is taken on the
positions whose next token is a label (assistant tokens, see encoding.py), summed, and
divided by their count. This is what `kernels: off` trains with, and what
`kernels/chunked_loss.py` computes without materialising those logits.

It is an nn.Module so that accelerate can wrap it (DDP hooks, autocast) like any model.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from tunelab.local.encoding import IGNORE


class TokenSums(NamedTuple):
    """What one batch adds up to: exact token-weighted means need sums, not means."""

    loss: torch.Tensor  # summed cross-entropy over the labelled tokens
    correct: torch.Tensor  # labelled tokens whose argmax is the label (no gradient)
    count: torch.Tensor  # labelled tokens


class AssistantLoss(nn.Module):
    """forward(input_ids, attention_mask, labels) -> mean loss over labelled tokens."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        # The last forward's sums, detached: forward returns only the loss (what backward
        # and DDP need), and the trainer reads the token accuracy from here.
        self.last: TokenSums | None = None

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                labels: torch.Tensor) -> torch.Tensor:
        sums = self.loss_sum(input_ids, attention_mask, labels)
        self.last = TokenSums(sums.loss.detach(), sums.correct, sums.count)
        return sums.loss / sums.count.clamp(min=1)

    def loss_sum(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 labels: torch.Tensor) -> TokenSums:
        """Summed token loss, correct argmax count and labelled-token count."""
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask,
                            use_cache=False).logits
        targets = labels[:, 1:]
        keep = targets != IGNORE
        # fp32 logits as transformers' own causal-LM loss upcasts them (bf16 blurs the loss).
        summed = nn.functional.cross_entropy(
            logits[:, :-1].float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
            ignore_index=IGNORE, reduction="sum")
        correct = (logits[:, :-1].detach().argmax(dim=-1) == targets)[keep].sum()
        return TokenSums(summed, correct, keep.sum())

    def sequence_logps(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       labels: torch.Tensor) -> torch.Tensor:
        """Each row's summed log-probability of its labelled tokens (what a preference loss
        compares), differentiable."""
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask,
                            use_cache=False).logits
        targets = labels[:, 1:]
        token_losses = nn.functional.cross_entropy(
            logits[:, :-1].float().transpose(1, 2), targets, ignore_index=IGNORE,
            reduction="none")
        return -token_losses.sum(dim=1)
