"""The trainer's speed and memory levers compute exactly what the plain code computes.

Each lever (fused chunked cross-entropy, the gated MLP without a kept silu, LoRA layers
that accumulate in place, the causal kernel for right-padded batches, largest batch first,
glibc's thresholds) changes how the work is laid out in memory, never the result:
these tests compare values and gradients against the plain PyTorch formulation.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tunelab.local import loss as loss_module
from tunelab.local.batching import epoch_batches
from tunelab.local.fused import silu_mul, use_fused_mlp
from tunelab.local.fused_lora import lora_linear, use_fused_lora
from tunelab.local.fused_norm import rms_norm, use_fused_rms_norm
from tunelab.local.loss import AssistantLoss, padding_mask, projected_cross_entropy
from tunelab.local.memory import keep_freed_memory, release_freed_memory


@pytest.mark.parametrize("rows_per_chunk", [1, 7, 64, 500])
@pytest.mark.parametrize("train_weight", [False, True])
def test_chunked_cross_entropy_equals_the_plain_one(rows_per_chunk: int,
                                                   train_weight: bool) -> None:
    torch.manual_seed(0)
    hidden = torch.randn(130, 32, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(300, 32, dtype=torch.float64, requires_grad=train_weight)
    targets = torch.randint(0, 300, (130,))
    plain = nn.functional.cross_entropy(hidden @ weight.t(), targets, reduction="sum")
    (plain * 0.25).backward()
    expected = hidden.grad.clone(), weight.grad.clone() if train_weight else None
    hidden.grad = weight.grad = None

    workspace = torch.empty(rows_per_chunk, 300, dtype=torch.float64)
    fused = projected_cross_entropy(hidden, weight, targets, workspace)
    (fused * 0.25).backward()

    torch.testing.assert_close(fused, plain)
    torch.testing.assert_close(hidden.grad, expected[0])
    if train_weight:
        torch.testing.assert_close(weight.grad, expected[1])
    else:
        assert weight.grad is None


def test_chunked_cross_entropy_without_grad_and_without_rows() -> None:
    weight = torch.randn(50, 8)
    with torch.no_grad():
        value = projected_cross_entropy(torch.randn(5, 8), weight, torch.arange(5),
                                        torch.empty(2, 50))
    assert value > 0
    empty = projected_cross_entropy(torch.zeros(0, 8, requires_grad=True), weight,
                                    torch.zeros(0, dtype=torch.long), torch.empty(2, 50))
    assert float(empty) == 0.0


def test_silu_mul_gradients_match_autograd() -> None:
    torch.manual_seed(1)
    gate = torch.randn(4, 6, 10, dtype=torch.float64, requires_grad=True)
    up = torch.randn(4, 6, 10, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(silu_mul, (gate, up))
    torch.testing.assert_close(silu_mul(gate, up), nn.functional.silu(gate) * up)


def test_fused_mlp_is_applied_to_llama_mlps_and_keeps_outputs() -> None:
    model = tiny_llama()
    ids = torch.randint(0, 64, (2, 9))
    before = model(input_ids=ids).logits
    model(input_ids=ids).logits.sum().backward()
    plain_grads = [param.grad.clone() for param in model.parameters()]
    model.zero_grad()

    assert use_fused_mlp(model) == 2
    torch.testing.assert_close(model(input_ids=ids).logits, before)
    model(input_ids=ids).logits.sum().backward()
    for param, expected in zip(model.parameters(), plain_grads, strict=True):
        torch.testing.assert_close(param.grad, expected)


def tiny_llama(seed: int = 2) -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                         attn_implementation="sdpa")
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def tiny_lora_llama() -> nn.Module:
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny_llama().double(), LoraConfig(
        r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear"))
    for name, param in model.named_parameters():
        if "lora_B" in name:  # peft starts B at zero; a random B tests the whole path
            nn.init.normal_(param, std=0.5)
    return model


@pytest.mark.parametrize("with_bias", [False, True])
def test_lora_linear_gradients_match_autograd(with_bias: bool) -> None:
    torch.manual_seed(3)
    inputs = (torch.randn(2, 5, 6, dtype=torch.float64, requires_grad=True),
              torch.randn(7, 6, dtype=torch.float64, requires_grad=True),
              torch.randn(7, dtype=torch.float64, requires_grad=True) if with_bias else None,
              torch.randn(3, 6, dtype=torch.float64, requires_grad=True),
              torch.randn(7, 3, dtype=torch.float64, requires_grad=True), 1.5)
    assert torch.autograd.gradcheck(lora_linear, inputs)
    x, weight, bias, lora_a, lora_b, scale = inputs
    plain = x @ weight.t() + (x @ lora_a.t()) @ lora_b.t() * scale
    expected = plain + bias if with_bias else plain
    torch.testing.assert_close(lora_linear(*inputs), expected)


def test_fused_lora_keeps_peft_outputs_and_gradients() -> None:
    model = tiny_lora_llama()
    ids = torch.randint(0, 64, (2, 9))
    before = model(input_ids=ids).logits
    before.sum().backward()
    trained = [name for name, param in model.named_parameters() if param.requires_grad]
    plain_grads = {name: param.grad.clone() for name, param in model.named_parameters()
                   if param.requires_grad}
    model.zero_grad()

    assert use_fused_lora(model) == 14  # 7 linear layers in each of 2 decoder layers
    after = model(input_ids=ids).logits
    after.sum().backward()
    torch.testing.assert_close(after, before)
    for name, param in model.named_parameters():
        if name in trained:
            torch.testing.assert_close(param.grad, plain_grads[name], msg=name)
        else:
            assert param.grad is None, name  # frozen weights stay frozen


def test_fused_lora_steps_aside_where_peft_does_more() -> None:
    model = tiny_lora_llama()
    use_fused_lora(model)
    ids = torch.randint(0, 64, (1, 6))
    with model.disable_adapter():  # the base model, as `compare base` runs it
        disabled = model(input_ids=ids).logits
    torch.testing.assert_close(disabled, tiny_llama().double()(input_ids=ids).logits)

    autocast_model = tiny_lora_llama().float()
    use_fused_lora(autocast_model)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # peft's path keeps autocast's dtypes
        layer = autocast_model.get_base_model().model.layers[0].self_attn.q_proj
        assert layer(torch.randn(1, 3, 16)).dtype == torch.bfloat16


def test_rms_norm_gradients_match_autograd() -> None:
    torch.manual_seed(5)
    x = torch.randn(2, 3, 8, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(rms_norm, (x, weight, 1e-6))
    expected = weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
    torch.testing.assert_close(rms_norm(x, weight, 1e-6), expected)


def test_fused_rms_norm_keeps_llama_outputs_and_gradients() -> None:
    model = tiny_llama(seed=6)
    for name, param in model.named_parameters():
        if "norm" in name:  # HF starts norms at one; a random weight tests the whole path
            nn.init.normal_(param, mean=1.0, std=0.3)
    ids = torch.randint(0, 64, (2, 9))
    before = model(input_ids=ids).logits
    before.sum().backward()
    plain_grads = [param.grad.clone() for param in model.parameters()]
    model.zero_grad()

    assert use_fused_rms_norm(model) == 5  # 2 per decoder layer and the final norm
    after = model(input_ids=ids).logits
    after.sum().backward()
    torch.testing.assert_close(after, before)
    for param, expected in zip(model.parameters(), plain_grads, strict=True):
        torch.testing.assert_close(param.grad, expected)
    with torch.no_grad():  # other dtypes keep HF's own forward
        half = model.model.norm(torch.randn(1, 2, 16, dtype=torch.bfloat16))
    assert half.dtype == torch.float32  # HF's: fp32 weight times the bf16-cast output


def test_right_padding_needs_no_mask_and_other_masks_pass_through() -> None:
    right = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    left = torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1]])
    assert padding_mask(right) is None
    assert padding_mask(left) is left


def test_loss_on_a_right_padded_batch_is_the_masked_loss(monkeypatch) -> None:
    model = tiny_llama(seed=4)
    ids = torch.randint(1, 64, (3, 10))
    mask = torch.ones_like(ids)
    mask[1, 6:], mask[2, 3:] = 0, 0
    labels = ids.masked_fill(mask == 0, -100)
    ids = ids.masked_fill(mask == 0, 0)
    causal = AssistantLoss(model)(ids, mask, labels)
    causal.backward()
    causal_grads = [param.grad.clone() for param in model.parameters()]
    model.zero_grad()

    monkeypatch.setattr(loss_module, "padding_mask", lambda attention_mask: attention_mask)
    masked = AssistantLoss(model)(ids, mask, labels)
    masked.backward()
    torch.testing.assert_close(causal, masked)
    for param, expected in zip(model.parameters(), causal_grads, strict=True):
        torch.testing.assert_close(param.grad, expected)


def test_largest_batch_comes_first_and_the_order_stays_a_function_of_seed_and_epoch() -> None:
    lengths = [((index * 37) % 101) + 5 for index in range(60)]
    batches = epoch_batches(lengths, 4, seed=3, epoch=1)
    sizes = [len(batch) * max(lengths[i] for i in batch) for batch in batches]
    assert sizes[0] == max(sizes)
    assert batches == epoch_batches(lengths, 4, seed=3, epoch=1)
    assert sorted(i for batch in batches for i in batch) == list(range(60))


def test_glibc_thresholds_apply_once_and_allocation_still_works() -> None:
    applied = keep_freed_memory()
    assert keep_freed_memory() == applied  # idempotent
    assert torch.ones(1 << 20).sum() == 1 << 20
    release_freed_memory()  # after a run: hands the free heap back, and the process goes on
    assert torch.ones(1 << 20).sum() == 1 << 20


def test_glibc_thresholds_stay_untouched_under_mimalloc(monkeypatch) -> None:
    from tunelab.local import memory

    monkeypatch.setattr(memory, "_applied", False)
    monkeypatch.setenv(memory.ALLOCATOR_FLAG, "mimalloc")  # as the re-executed CLI has it
    assert keep_freed_memory() is False
    release_freed_memory()  # nothing to trim: glibc's malloc is not the allocator


def test_training_processes_run_under_mimalloc_when_it_is_installed(tmp_path) -> None:
    import os
    import subprocess
    import sys

    from tunelab.local.memory import allocator_env

    extra = allocator_env({})
    if not extra:
        pytest.skip("cmeel-mimalloc is not installed (it comes with tunelab[local] on Linux)")
    probe = ("import torch; print(open('/proc/self/maps').read().count('libmimalloc') > 0, "
             "float((torch.ones(256, 256) @ torch.ones(256, 256)).sum()))")
    done = subprocess.run([sys.executable, "-c", probe], env={**os.environ, **extra},
                          capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["True", str(float(256 ** 3))]
    # The CLI re-executes itself for `train`: arguments, exit code and the one-line error
    # survive the exec, and the flag stops a second one.
    missing = tmp_path / "missing.jsonl"
    done = subprocess.run([sys.executable, "-m", "tunelab", "train", str(missing)],
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert "missing.jsonl" in done.stderr and "Traceback" not in done.stderr
    assert allocator_env({"TUNELAB_ALLOCATOR": "mimalloc"}) == {}
