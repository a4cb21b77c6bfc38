"""The trainer's speed and memory levers compute exactly what the plain code computes.

Each lever (fused chunked cross-entropy, the gated MLP without a kept silu, LoRA layers
that accumulate in place, the causal kernel for right-padded batches, largest batch first,
glibc's thresholds) changes how the work is laid out in memory, never the result:
these tests compare values and gradients against the plain PyTorch formulation.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from tunelab.local.batching import epoch_batches
from tunelab.local.kernels.chunked_loss import (
    ChunkedAssistantLoss,
    padding_mask,
    projected_cross_entropy,
)
from tunelab.local.kernels.gated_mlp import silu_mul, use_fused_mlp
from tunelab.local.kernels.lora_linear import lora_linear, use_fused_lora
from tunelab.local.kernels.rms_norm import rms_norm, use_fused_rms_norm
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


def test_loss_on_a_right_padded_batch_is_the_masked_loss() -> None:
    model = tiny_llama(seed=4)
    ids = torch.randint(1, 64, (3, 10))
    mask = torch.ones_like(ids)
    mask[1, 6:], mask[2, 3:] = 0, 0
    labels = ids.masked_fill(mask == 0, -100)
    ids = ids.masked_fill(mask == 0, 0)
    causal = ChunkedAssistantLoss(model)(ids, mask, labels)
    causal.backward()
    causal_grads = [param.grad.clone() for param in model.parameters()]
    model.zero_grad()

    masked = ChunkedAssistantLoss(model, causal_padding=False)(ids, mask, labels)
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


# The switch: kernels "auto" and "off" train to the same losses ---------------------------
TINY_ARCHITECTURES = {  # model_type -> the transformers config class, tiny sizes below
    "llama": "LlamaConfig", "mistral": "MistralConfig", "qwen2": "Qwen2Config",
    "qwen3": "Qwen3Config",
}


def tiny_model_folder(folder, model_type: str, seed: int = 7):
    """A randomly initialised tiny causal LM of `model_type`, saved as a HF folder."""
    import transformers

    config_class = getattr(transformers, TINY_ARCHITECTURES.get(model_type, "Gemma2Config"))
    attention = "sdpa" if model_type in TINY_ARCHITECTURES else "eager"  # Gemma2: no sdpa
    config = config_class(vocab_size=96, hidden_size=32, intermediate_size=64,
                          num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                          head_dim=8, tie_word_embeddings=True, attn_implementation=attention,
                          bos_token_id=1, eos_token_id=2, pad_token_id=0)
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config)
    for name, param in model.named_parameters():
        if "norm" in name:  # HF starts norms at one; a random weight tests the whole path
            nn.init.normal_(param, mean=1.0, std=0.3)
    model.save_pretrained(folder)
    return folder


def chat_like_batches(count: int = 3, rows: int = 3) -> list[dict]:
    """Right-padded batches of varied lengths whose labels start after a prompt."""
    from tunelab.local.batching import collate
    from tunelab.local.encoding import IGNORE, Encoded

    generator = torch.Generator().manual_seed(11)
    batches = []
    for _ in range(count):
        items = []
        for _ in range(rows):
            length = int(torch.randint(8, 24, (1,), generator=generator))
            prompt = int(torch.randint(2, length - 3, (1,), generator=generator))
            ids = torch.randint(3, 96, (length,), generator=generator).tolist()
            items.append(Encoded(ids, [IGNORE] * prompt + ids[prompt:]))
        batches.append(collate(items, pad_id=0))
    return batches


def patched_forwards(model: nn.Module) -> list[str]:
    """Modules whose forward was replaced on the instance (how every kernel is applied)."""
    return [name for name, module in model.named_modules() if "forward" in vars(module)]


def train_losses(folder, mode: str, full: bool) -> tuple[list[tuple[float, float]], object]:
    """(loss, token accuracy) of each step of a short run, and the run's session."""
    from tunelab.config import TrainConfig
    from tunelab.local import trainer
    from tunelab.local.encoding import EncodedSet

    batches = chat_like_batches()
    config = TrainConfig(model=str(folder), full=full, kernels=mode, learning_rate=1e-2,
                         warmup_ratio=0.0, max_steps=len(batches), batch_size=3, seed=5,
                         lora_r=4, lora_alpha=8)
    # The steps take batches directly; the set only sizes the schedule, and the tokenizer
    # is asked only for its pad id (what a method's prepare step pads with).
    session = trainer.setup(config, SimpleNamespace(pad_token_id=0),
                            EncodedSet(items=[None] * 9), None, base_ref=str(folder))
    steps = [trainer.train_step(session, batch) for batch in batches]
    return [(step.loss, step.metrics["train_mean_token_accuracy"]) for step in steps], session


def moved_from_start(model: nn.Module, folder) -> bool:
    """Whether training changed the weights: LoRA's B starts at zero, a full run's at the
    saved model's."""
    from transformers import AutoModelForCausalLM

    lora_b = [param for name, param in model.named_parameters() if "lora_B" in name]
    if lora_b:
        return any(bool(param.abs().sum() > 0) for param in lora_b)
    start = AutoModelForCausalLM.from_pretrained(folder).lm_head.weight
    return not torch.allclose(model.lm_head.weight, start)


@pytest.mark.parametrize("full", [False, True], ids=["lora", "full"])
@pytest.mark.parametrize("model_type", list(TINY_ARCHITECTURES))
def test_kernels_auto_and_off_train_to_the_same_losses(tmp_path, model_type: str,
                                                      full: bool) -> None:
    folder = tiny_model_folder(tmp_path / model_type, model_type)
    auto, auto_session = train_losses(folder, "auto", full)
    off, off_session = train_losses(folder, "off", full)

    assert max(abs(a[0] - b[0]) for a, b in zip(auto, off, strict=True)) <= 1e-4, (auto, off)
    assert [a[1] for a in auto] == [b[1] for b in off]  # the same argmax tokens
    trained = dict(auto_session.model.named_parameters())
    for name, param in off_session.model.named_parameters():
        if param.requires_grad:  # the same gradients took both to the same weights
            torch.testing.assert_close(trained[name], param, atol=1e-4, rtol=0, msg=name)
    assert moved_from_start(auto_session.model, folder)
    assert patched_forwards(off_session.model) == []  # off: plain transformers + peft
    assert patched_forwards(auto_session.model)
    assert auto_session.kernels.startswith("kernels: auto (gated_mlp")
    assert off_session.kernels == "kernels: off (plain transformers + peft)"


def test_every_architecture_auto_trusts_is_tested_above() -> None:
    from tunelab.local import kernels

    assert set(TINY_ARCHITECTURES) == kernels.TESTED_MODEL_TYPES


def test_auto_leaves_an_untested_architecture_plain(tmp_path) -> None:
    from transformers import AutoModelForCausalLM

    from tunelab.local import kernels
    from tunelab.local.assistant_loss import AssistantLoss

    # Gemma2 soft-caps its logits, which the chunked loss does not: the gate is what keeps
    # it from training on a wrong loss.
    model = AutoModelForCausalLM.from_pretrained(tiny_model_folder(tmp_path, "gemma2"))
    model.config.final_logit_softcapping = 0.5  # the default 30 barely bends tiny logits
    batch = chat_like_batches(count=1)[0]
    plain = AssistantLoss(model)(**batch)
    assert not torch.isclose(ChunkedAssistantLoss(model)(**batch), plain)

    applied = kernels.apply(model, "auto")
    assert applied.names == [] and patched_forwards(model) == []
    assert applied.note == ("kernels: off for model type 'gemma2'; auto uses them on "
                            "llama, mistral, qwen2, qwen3 only")
    torch.testing.assert_close(applied.loss(**batch), plain)


def test_plain_loss_is_the_transformers_causal_lm_loss() -> None:
    from tunelab.local.assistant_loss import AssistantLoss

    model = tiny_llama(seed=8)
    batch = chat_like_batches(count=1)[0]
    batch["input_ids"] = batch["input_ids"] % 64  # tiny_llama's vocabulary
    batch["labels"] = torch.where(batch["labels"] >= 0, batch["labels"] % 64, batch["labels"])
    expected = model(**batch).loss  # transformers' own shift and mean over labelled tokens
    torch.testing.assert_close(AssistantLoss(model)(**batch), expected)
    torch.testing.assert_close(ChunkedAssistantLoss(model)(**batch), expected)


def test_leaving_kernels_out_by_name() -> None:
    from tunelab.local import kernels
    from tunelab.local.assistant_loss import AssistantLoss

    applied = kernels.apply(tiny_llama(), "auto", without={"rms_norm", "causal_padding"})
    assert applied.names == ["gated_mlp", "chunked_loss"]  # no LoRA layers in this model
    assert isinstance(applied.loss, ChunkedAssistantLoss) and not applied.loss.causal_padding
    plain = kernels.apply(tiny_llama(), "auto", without={"chunked_loss"}).loss
    assert type(plain) is AssistantLoss
    with pytest.raises(ValueError, match="unknown kernels"):
        kernels.apply(tiny_llama(), "auto", without={"fused_everything"})
