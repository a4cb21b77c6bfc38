"""The DPO loss as a module the loop trains through (methods/dpo.py says what it is).

An nn.Module, as assistant_loss.AssistantLoss, so that accelerate can wrap it (DDP hooks,
autocast) like any model. Its `scorer` is the kernels' loss module (kernels.apply), whose
`sequence_logps` gives each row's summed answer log-probability: the chunked kernel where
the speed kernels run, the plain logits elsewhere.
"""

from __future__ import annotations

import torch
import torch.nn.functional as functional
from torch import nn


class PreferenceLoss(nn.Module):
    """forward(input_ids, attention_mask, labels, reference_logps) -> mean DPO loss over the
    batch's pairs, whose first half of rows are the preferred answers. `model` is what
    checkpoints save."""

    def __init__(self, scorer: nn.Module, beta: float) -> None:
        super().__init__()
        self.scorer = scorer
        self.beta = beta
        self.last: dict[str, torch.Tensor] = {}  # the last forward's sums, detached

    @property
    def model(self) -> nn.Module:
        return self.scorer.model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                labels: torch.Tensor, reference_logps: torch.Tensor) -> torch.Tensor:
        logps = self.scorer.sequence_logps(input_ids, attention_mask, labels)
        sums = preference_sums(logps, reference_logps, self.beta)
        loss = sums.pop("loss")
        self.last = {"loss": loss.detach(), **sums}
        return loss / sums["pairs"]


def preference_sums(logps: torch.Tensor, reference: torch.Tensor,
                    beta: float) -> dict[str, torch.Tensor]:
    """DPO over rows whose first half are the preferred answers: the summed loss
    (differentiable), and the metrics' sums (detached): the pairs, those the implicit reward
    ranks right, its margin, and each side's log-probability."""
    half = logps.shape[0] // 2
    rewards = beta * (logps - reference.to(logps.dtype))
    margin = rewards[:half] - rewards[half:]
    loss = -functional.logsigmoid(margin).sum()
    detached = margin.detach()
    return {"pairs": loss.new_tensor(float(half)), "loss": loss,
            "correct": (detached > 0).sum().to(loss.dtype), "margin": detached.sum(),
            "preferred": logps[:half].detach().sum(),
            "non_preferred": logps[half:].detach().sum()}


def no_dropout(model: nn.Module) -> None:
    """Every dropout off, as TRL's disable_dropout_in_model, attention dropout included:
    the policy then equals the reference at step 0."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
        if isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = 0.0
