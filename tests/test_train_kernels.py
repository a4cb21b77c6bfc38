"""The trainer's speed and memory levers compute exactly what the plain code computes.

Each lever (fused chunked cross-entropy, the gated MLP without a kept silu, largest batch
first, glibc's thresholds) changes how the work is laid out in memory, never the result:
these tests compare values and gradients against the plain PyTorch formulation.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tunelab.local.batching import epoch_batches
from tunelab.local.fused import silu_mul, use_fused_mlp
from tunelab.local.loss import projected_cross_entropy
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
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1)
    torch.manual_seed(2)
    model = LlamaForCausalLM(config)
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
