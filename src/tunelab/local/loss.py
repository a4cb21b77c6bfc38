"""The training loss, without logits for tokens that carry no loss.

A causal LM's forward would project every position onto the 49k-token vocabulary. Most
positions (system prompt, user turns, padding) carry no loss, so we run the decoder to
hidden states, gather the positions whose next token is a label, and project only those.
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

    @property
    def causal_lm(self) -> nn.Module:
        """The transformers model under any PEFT wrapper (LoRA layers are injected in it)."""
        return self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                labels: torch.Tensor) -> torch.Tensor:
        summed, count = self.loss_sum(input_ids, attention_mask, labels)
        return summed / count.clamp(min=1)

    def loss_sum(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(summed token loss, number of labelled tokens): for exact token-weighted means."""
        causal_lm = self.causal_lm
        hidden = causal_lm.get_decoder()(input_ids=input_ids, attention_mask=attention_mask,
                              use_cache=False).last_hidden_state
        targets = labels[:, 1:]
        keep = targets != IGNORE
        picked = hidden[:, :-1][keep]
        # The projection and softmax run in fp32 even under bf16 autocast: they are a small
        # share of the work once gathered, and bf16 logits over 49k tokens blur the loss.
        with torch.autocast(device_type=picked.device.type, enabled=False):
            logits = causal_lm.get_output_embeddings()(picked.float())
            summed = nn.functional.cross_entropy(logits, targets[keep], reduction="sum")
        return summed, keep.sum()
