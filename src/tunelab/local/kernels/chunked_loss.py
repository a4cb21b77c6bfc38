"""The training loss, without logits for tokens that carry no loss, and without a logits tensor.

A causal LM's forward would project every position onto the 49k-token vocabulary. Most
positions (system prompt, user turns, padding) carry no loss, so we run the decoder to
hidden states, gather the positions whose next token is a label, and project only those.

Even gathered, those logits are big (1,000 labelled tokens x 49,152 x 4 bytes = 197 MB),
and the usual cross-entropy keeps three such tensors alive into the backward pass: logits,
log-softmax, and their gradient. On a CPU each fresh buffer of that size is new pages from
the kernel: we measured 144k page faults per step, 10% of the step in the kernel. So the
projection and the cross-entropy are fused and done in row chunks inside one reusable
workspace, and the gradient with respect to the hidden states is computed in the forward
pass (the loss is the graph's last node, so it is known there); backward only scales it.
Peak memory drops by the size of those tensors, and the FLOPs are the same.

It assumes the logits are exactly `lm_head(decoder(x))`: no soft-capping or logit scale
(Gemma2, Cohere and Granite have one), which is why `kernels.apply` uses it only on the
architectures it was tested on. The plain formulation is `assistant_loss.AssistantLoss`.
"""

from __future__ import annotations

import torch
from torch import nn

from tunelab.local.assistant_loss import AssistantLoss, TokenSums
from tunelab.local.encoding import IGNORE

# One chunk of logits. It and its temporaries stay under glibc's 32 MB mmap threshold,
# so their pages are reused from step to step (see local/memory.py).
WORKSPACE_BYTES = 16 << 20


class ChunkedAssistantLoss(AssistantLoss):
    """AssistantLoss's value and gradients, projecting only labelled positions, in chunks.

    `causal_padding` drops the padding mask of right-padded batches (see padding_mask).
    """

    def __init__(self, model: nn.Module, *, causal_padding: bool = True) -> None:
        super().__init__(model)
        self.causal_padding = causal_padding
        self._workspace: torch.Tensor | None = None

    @property
    def causal_lm(self) -> nn.Module:
        """The transformers model under any PEFT wrapper (LoRA layers are injected in it)."""
        return self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model

    def loss_sum(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 labels: torch.Tensor) -> TokenSums:
        """Summed token loss, correct argmax count and labelled-token count."""
        picked, targets = self.labelled_hidden(input_ids, attention_mask, labels)
        weight = self.causal_lm.get_output_embeddings().weight
        correct = torch.zeros((), dtype=torch.long, device=targets.device)
        with torch.autocast(device_type=picked.device.type, enabled=False):
            summed = projected_cross_entropy(picked, weight, targets, self._chunk(weight),
                                             correct=correct)
        return TokenSums(summed, correct, torch.tensor(targets.shape[0], device=targets.device))

    def sequence_logps(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       labels: torch.Tensor) -> torch.Tensor:
        """AssistantLoss.sequence_logps, projecting only the labelled positions: each
        row's summed log-probability of its labelled tokens."""
        picked, targets = self.labelled_hidden(input_ids, attention_mask, labels)
        rows = (labels[:, 1:] != IGNORE).nonzero()[:, 0]  # the row of each labelled token
        weight = self.causal_lm.get_output_embeddings().weight
        with torch.autocast(device_type=picked.device.type, enabled=False):
            token_losses = projected_token_losses(picked, weight, targets, self._chunk(weight))
        sums = torch.zeros(labels.shape[0], dtype=token_losses.dtype, device=labels.device)
        return -sums.index_add(0, rows, token_losses)

    def labelled_hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                        labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(fp32 hidden states of the positions whose next token is a label, those labels)."""
        mask = padding_mask(attention_mask) if self.causal_padding else attention_mask
        hidden = self.causal_lm.get_decoder()(input_ids=input_ids, attention_mask=mask,
                                              use_cache=False).last_hidden_state
        targets = labels[:, 1:]
        keep = targets != IGNORE
        # The projection and softmax run in fp32 even under bf16 autocast: they are a small
        # share of the work once gathered, and bf16 logits over 49k tokens blur the loss.
        return hidden[:, :-1][keep].float(), targets[keep]

    def _chunk(self, weight: torch.Tensor) -> torch.Tensor:
        """The reusable fp32 buffer one chunk of logits is written into."""
        vocab = weight.shape[0]
        rows = max(1, WORKSPACE_BYTES // (4 * vocab))
        workspace = self._workspace
        if workspace is None or workspace.device != weight.device or workspace.shape[1] != vocab:
            workspace = self._workspace = torch.empty(rows, vocab, device=weight.device,
                                                     dtype=torch.float32)
        return workspace


def padding_mask(attention_mask: torch.Tensor) -> torch.Tensor | None:
    """The mask the decoder needs: None when every row is right-padded.

    Under a causal mask a right-padded row's real tokens only ever see earlier, real
    tokens, so the padding mask changes nothing the loss reads: pad positions carry no
    labels and no real token attends to them. Without it, sdpa runs its causal kernel
    (it skips the blocks above the diagonal, and attends grouped KV heads without copying
    them) instead of a masked one over every block: 16% less attention time at 4 x 480,
    4% of a whole step on the sample data (bench/train_throughput.py --interleaved).
    Any other mask (left padding, holes) is passed through.
    """
    width = attention_mask.shape[1]
    lengths = attention_mask.sum(dim=1, keepdim=True)
    positions = torch.arange(width, device=attention_mask.device)
    right_padded = torch.equal(attention_mask.bool(), positions[None, :] < lengths)
    return None if right_padded else attention_mask


def projected_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor,
                            targets: torch.Tensor, workspace: torch.Tensor, *,
                            correct: torch.Tensor | None = None) -> torch.Tensor:
    """sum(cross_entropy(hidden @ weight.T, targets)) in hidden's dtype, chunked through
    `workspace` (which must have that dtype).

    Equal to `F.cross_entropy(F.linear(hidden, weight), targets, reduction="sum")` and
    differentiable in `hidden` and `weight` (a full fine-tune trains the tied embeddings).
    `correct`, a 0-d integer tensor, has the number of rows whose argmax is the target
    added to it, read off each chunk of logits while it exists.
    """
    wanted = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    return _ProjectedCrossEntropy.apply(hidden, weight, targets, workspace, wanted, correct,
                                        False)


def projected_token_losses(hidden: torch.Tensor, weight: torch.Tensor,
                           targets: torch.Tensor, workspace: torch.Tensor) -> torch.Tensor:
    """Each row's cross_entropy(hidden @ weight.T, targets), a vector: what a loss that is
    not a plain sum of token losses needs (DPO sums them per sequence, then takes a
    logsigmoid of differences). The same chunks as `projected_cross_entropy`; the gradient
    in `hidden` is still made in the forward pass and scaled per row in backward. That in
    `weight` (a full fine-tune) cannot be summed before the rows' scales are known, so
    backward projects the chunks once more for it."""
    wanted = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    return _ProjectedCrossEntropy.apply(hidden, weight, targets, workspace, wanted, None,
                                        True)


def _softmax_minus_target(logits: torch.Tensor, target: torch.Tensor,
                          correct: torch.Tensor | None = None, *, gradient: bool = True
                          ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(each row's cross-entropy, d(it)/d(logits) = softmax - one_hot(target)), the latter
    built in place in `logits` (a chunk of the workspace), None without `gradient`."""
    picked = logits.gather(1, target[:, None]).squeeze(1)
    # logsumexp by hand: the row max it needs also names the argmax, so the token
    # accuracy costs no extra pass, and exp() is taken once, in place, for both the
    # loss and the softmax (measured: 483 ms with the count against 500 ms for
    # logsumexp without it, 1,000 rows x 49,152, this CPU).
    maxes, predicted = logits.max(dim=1)
    if correct is not None:
        correct += (predicted == target).sum()
    exps = logits.sub_(maxes[:, None]).exp_()
    sums = exps.sum(dim=1)
    losses = maxes + sums.log() - picked
    if not gradient:
        return losses, None
    probs = exps.div_(sums[:, None])
    probs[torch.arange(logits.shape[0], device=probs.device), target] -= 1.0
    return losses, probs


class _ProjectedCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, workspace, wanted, correct, per_row):  # noqa: ANN001, ANN205, PLR0913
        weight32 = weight.to(hidden.dtype)  # fp32 from loss_sum: a no-op unless bf16
        grad_hidden = torch.empty_like(hidden) if wanted and hidden.requires_grad else None
        # Per row, the weight's gradient waits for backward's row scales (see above).
        weight_grad = wanted and weight.requires_grad
        grad_weight = torch.zeros_like(weight32) if weight_grad and not per_row else None
        losses = torch.empty(hidden.shape[0], dtype=hidden.dtype, device=hidden.device)
        rows = workspace.shape[0]
        for start in range(0, hidden.shape[0], rows):
            chunk = hidden[start:start + rows]
            logits = torch.mm(chunk, weight32.t(), out=workspace[:chunk.shape[0]])
            # d(loss)/d(logits) = softmax - one_hot(target), left in the workspace.
            losses[start:start + rows], probs = _softmax_minus_target(
                logits, targets[start:start + rows], correct,
                gradient=grad_hidden is not None or grad_weight is not None)
            if probs is None:
                continue
            if grad_hidden is not None:
                torch.mm(probs, weight32, out=grad_hidden[start:start + rows])
            if grad_weight is not None:
                grad_weight.addmm_(probs.t(), chunk)
        ctx.per_row, ctx.weight_dtype = per_row, weight.dtype
        if per_row and weight_grad:
            ctx.save_for_backward(grad_hidden, hidden, weight, targets, workspace)
        else:
            ctx.save_for_backward(grad_hidden, grad_weight)
        return losses if per_row else losses.sum()

    @staticmethod
    def backward(ctx, grad_output):  # noqa: ANN001, ANN205
        if ctx.per_row and len(ctx.saved_tensors) == 5:
            grad_hidden, hidden, weight, targets, workspace = ctx.saved_tensors
            grad_weight = _scaled_weight_grad(hidden, weight, targets, workspace, grad_output)
        else:
            grad_hidden, grad_weight = ctx.saved_tensors
        scale = grad_output[:, None] if ctx.per_row else grad_output
        if grad_hidden is not None:
            grad_hidden = grad_hidden * scale
        if grad_weight is not None:
            grad_weight = (grad_weight if ctx.per_row else grad_weight * grad_output
                           ).to(ctx.weight_dtype)
        return grad_hidden, grad_weight, None, None, None, None, None


def _scaled_weight_grad(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                        workspace: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """sum over rows of scales[row] * d(loss[row])/d(weight), the chunks projected again."""
    weight32 = weight.to(hidden.dtype)
    grad_weight = torch.zeros_like(weight32)
    rows = workspace.shape[0]
    for start in range(0, hidden.shape[0], rows):
        chunk = hidden[start:start + rows]
        logits = torch.mm(chunk, weight32.t(), out=workspace[:chunk.shape[0]])
        _, probs = _softmax_minus_target(logits, targets[start:start + rows])
        assert probs is not None  # gradient=True
        probs.mul_(scales[start:start + rows, None].to(probs.dtype))
        grad_weight.addmm_(probs.t(), chunk)
    return grad_weight
