"""LoRA linear layers in two matrix products instead of five passes over the output.

peft computes `base(x) + lora_B(lora_A(x)) * scaling`: the base product, the rank-r
product, a scaling pass and an addition, each writing a fresh output-sized tensor, and
backward repeats the pattern for the gradient. Those extra passes are memory-bound: with
glibc's malloc they were about a fifth of a 4 x 512 training step of the default model
(torch.profiler); under mimalloc, which `tunelab train` runs with, the whole lever is worth
2% (bench/train_throughput.py --interleaved). Here the rank-r update accumulates into the
base product in place (`addmm_`, beta=1), the scaling rides on the small rank-r factor,
and backward does the same for the input gradient.

Same math as peft's forward (tested against it, values and gradients, in float64). It is
used only where it is exactly that: one plain LoRA adapter on an `nn.Linear`, no dropout,
not merged or disabled, no autocast. Anything else (DoRA and other variants, mixed-adapter
batches, bf16 autocast) takes peft's own forward, checked on every call because adapters
can be disabled or merged at any time.
"""

from __future__ import annotations

import types
from typing import Any

import torch
from torch import nn


def use_fused_lora(model: nn.Module) -> int:
    """Route every plain peft LoRA Linear in `model` through lora_linear; returns how many."""
    try:
        from peft.tuners.lora.layer import Linear as LoraLinear
    except ImportError:  # peft is optional for full fine-tunes
        return 0
    patched = 0
    for module in model.modules():
        if type(module) is LoraLinear and type(module.base_layer) is nn.Linear:
            module.forward = types.MethodType(_make_forward(module.forward), module)
            patched += 1
    return patched


def _make_forward(peft_forward: Any) -> Any:
    def forward(self: nn.Module, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        adapter = _plain_adapter(self, x, args, kwargs)
        if adapter is None:
            return peft_forward(x, *args, **kwargs)
        base = self.base_layer
        return lora_linear(x, base.weight, base.bias, self.lora_A[adapter].weight,
                           self.lora_B[adapter].weight, self.scaling[adapter])

    return forward


def _plain_adapter(layer: Any, x: torch.Tensor, args: tuple, kwargs: dict) -> str | None:
    """The one active adapter when this call is plain LoRA on a plain linear, else None."""
    if args or kwargs or layer.disable_adapters or layer.merged:
        return None
    if torch.is_autocast_enabled(x.device.type):
        return None
    active = layer.active_adapters
    if len(active) != 1 or active[0] not in layer.lora_A:
        return None
    adapter = active[0]
    if adapter in getattr(layer, "lora_variant", {}):  # DoRA and other variants
        return None
    if not isinstance(layer.lora_dropout[adapter], nn.Identity):
        return None
    dtypes = {x.dtype, layer.base_layer.weight.dtype, layer.lora_A[adapter].weight.dtype}
    return adapter if len(dtypes) == 1 else None


def lora_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                lora_a: torch.Tensor, lora_b: torch.Tensor, scale: float) -> torch.Tensor:
    """x @ weight.T + bias + scale * (x @ lora_a.T) @ lora_b.T."""
    return _LoraLinear.apply(x, weight, bias, lora_a, lora_b, float(scale))


class _LoraLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, lora_a, lora_b, scale):  # noqa: ANN001, ANN205
        rows = x.reshape(-1, x.shape[-1])
        low_rank = rows @ lora_a.t()
        out = rows @ weight.t() if bias is None else torch.addmm(bias, rows, weight.t())
        out.addmm_(low_rank, lora_b.t(), alpha=scale)
        ctx.save_for_backward(rows, low_rank, weight, lora_a, lora_b)
        ctx.scale, ctx.input_shape = scale, x.shape
        return out.view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001, ANN205
        rows, low_rank, weight, lora_a, lora_b = ctx.saved_tensors
        need_x, need_weight, need_bias, need_a, need_b, _ = ctx.needs_input_grad
        grad = grad.reshape(-1, grad.shape[-1])
        # d(loss)/d(low_rank), scaled once on the rank-r factor rather than on the output.
        grad_low = (grad @ lora_b).mul_(ctx.scale)
        grad_x = grad_weight = grad_bias = grad_a = grad_b = None
        if need_x:
            grad_x = (grad @ weight).addmm_(grad_low, lora_a).view(ctx.input_shape)
        if need_weight:
            grad_weight = grad.t() @ rows
        if need_bias:
            grad_bias = grad.sum(0)
        if need_a:
            grad_a = grad_low.t() @ rows
        if need_b:
            grad_b = grad.t() @ low_rank.mul(ctx.scale)
        return grad_x, grad_weight, grad_bias, grad_a, grad_b, None
