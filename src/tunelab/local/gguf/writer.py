"""A loaded Hugging Face causal LM written as one GGUF file with gguf's GGUFWriter.

The parts llama.cpp reads differently from transformers, each a known way to get a model
that loads and babbles:
- Q and K projections of the llama architecture are permuted from HF's rotate-half rope
  layout to llama.cpp's interleaved one (Qwen's architectures use llama.cpp's NEOX rope,
  which is HF's layout: no permutation there).
- Tied embeddings: no `output.weight`; llama.cpp then reuses `token_embd.weight`.
- Norms and other 1-D tensors stay f32 in every quantization, as llama.cpp's converter
  keeps them; a q8_0 row whose length is not a multiple of 32 falls back to f16.
- Llama 3.1+ rope scaling travels as the `rope_freqs` tensor of per-frequency factors.

Tensors are converted one at a time while the file is written, so memory stays at about
one copy of the model, and `progress(done_bytes, total_bytes)` reports each one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunelab.errors import UsageError
from tunelab.local.gguf.tokenizer import Vocab

SUPPORTED = "Llama (SmolLM2, Llama 3.x), Mistral, Qwen2/2.5 and Qwen3"
# HF architecture -> (llama.cpp architecture, permute Q/K for llama.cpp's rope layout)
ARCHITECTURES = {
    "LlamaForCausalLM": ("llama", True),
    "MistralForCausalLM": ("llama", True),  # llama.cpp runs Mistral as the llama architecture
    "Qwen2ForCausalLM": ("qwen2", False),
    "Qwen3ForCausalLM": ("qwen3", False),
}
QUANTIZATIONS = ("f16", "bf16", "q8_0")

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Plan:
    """One tensor as it will sit in the file."""

    name: str  # llama.cpp's name
    source: str  # the HF state-dict key ("" for tensors made here, like rope_freqs)
    qtype: Any  # gguf.GGMLQuantizationType
    shape: tuple[int, ...]  # element shape, numpy order
    nbytes: int


def architecture(config: Any) -> tuple[str, bool]:
    """llama.cpp's architecture for an HF config, and whether Q/K need permuting; any other
    architecture fails at once, before a weight is read."""
    names = list(getattr(config, "architectures", None) or [])
    for name in names:
        if name in ARCHITECTURES:
            return ARCHITECTURES[name]
    shown = ", ".join(names) or getattr(config, "model_type", "unknown")
    raise UsageError(f"GGUF export does not support the {shown} architecture",
                     fix=f"GGUF export supports {SUPPORTED}; use --format hf for this model")


def check_quantization(quantize: str) -> str:
    if quantize not in QUANTIZATIONS:
        raise UsageError(f"--quantize {quantize}: not a GGUF type tunelab writes",
                         fix=f"use one of {', '.join(QUANTIZATIONS)}")
    return quantize


def estimated_bytes(model: Any, quantize: str) -> int:
    """About how large the file will be (tensor data only), to check free space first."""
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    total = 0
    for key, tensor in model.state_dict().items():
        if tied and key == "lm_head.weight":
            continue
        per = 4 if tensor.dim() < 2 else {"f16": 2, "bf16": 2, "q8_0": 34 / 32}[quantize]
        total += int(tensor.numel() * per)
    return total


def write_gguf(path: Path, model: Any, vocab: Vocab, quantize: str, *, name: str,
               progress: Progress | None = None) -> None:
    """Write `model` (an HF causal LM, merged) and `vocab` to `path`."""
    import gguf
    import numpy as np

    config = model.config
    arch, permute = architecture(config)
    state = model.state_dict()
    tensors = dict(_named_tensors(state, config, arch))
    plans = [_plan(gguf_name, source, tensors[gguf_name], quantize)
             for gguf_name, source in _sources(state, config, arch)]
    writer = gguf.GGUFWriter(path=None, arch=arch)
    try:
        writer.add_name(name)
        _add_hyperparameters(writer, config, quantize)
        vocab.add_to(writer)
        for plan in plans:
            dtype = _numpy_dtype(plan.qtype)
            shape = plan.shape if dtype != np.uint8 else gguf.quant_shape_to_byte_shape(
                plan.shape, plan.qtype)
            writer.add_tensor_info(plan.name, shape, dtype, plan.nbytes, raw_dtype=plan.qtype)
        writer.write_header_to_file(path)
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        total, done = sum(plan.nbytes for plan in plans), 0
        for plan in plans:
            data = _converted(tensors[plan.name], plan.source, config, permute, plan.qtype)
            writer.write_tensor_data(data)
            done += plan.nbytes
            if progress:
                progress(done, total)
    finally:
        writer.close()


# tensors ----------------------------------------------------------------------------------
def _sources(state: dict[str, Any], config: Any, arch: str) -> Iterator[tuple[str, str]]:
    """(llama.cpp name, HF key) for every tensor to write, in state-dict order."""
    import gguf

    mapping = gguf.get_tensor_name_map(_model_arch(arch), config.num_hidden_layers)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    if _llama3_rope(config):
        yield "rope_freqs.weight", ""
    for key in state:
        if key.endswith("rotary_emb.inv_freq") or (tied and key == "lm_head.weight"):
            continue
        name = mapping.get_name(key, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise UsageError(f"GGUF export: no llama.cpp name for the tensor {key}",
                             fix=f"GGUF export supports {SUPPORTED}; use --format hf")
        yield name, key


def _named_tensors(state: dict[str, Any], config: Any, arch: str) -> Iterator[tuple[str, Any]]:
    for name, key in _sources(state, config, arch):
        yield name, (_rope_freqs(config) if not key else state[key])


def _plan(name: str, source: str, tensor: Any, quantize: str) -> Plan:
    import gguf

    types = gguf.GGMLQuantizationType
    shape = tuple(tensor.shape)
    if len(shape) < 2:
        qtype = types.F32
    else:
        qtype = {"f16": types.F16, "bf16": types.BF16, "q8_0": types.Q8_0}[quantize]
        if qtype == types.Q8_0 and shape[-1] % gguf.GGML_QUANT_SIZES[qtype][0]:
            qtype = types.F16  # q8_0 packs rows in blocks of 32 values
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    count = 1
    for dim in shape:
        count *= dim
    return Plan(name, source, qtype, shape, count // block * size)


def _numpy_dtype(qtype: Any) -> Any:
    """The dtype of the array written: quantized (and bf16) data goes as raw bytes."""
    import gguf
    import numpy as np

    types = gguf.GGMLQuantizationType
    return np.dtype({types.F32: np.float32, types.F16: np.float16}.get(qtype, np.uint8))


def _converted(tensor: Any, source: str, config: Any, permute: bool, qtype: Any) -> Any:
    import gguf

    data = tensor.detach().float().cpu()
    if permute and source.endswith(("q_proj.weight", "k_proj.weight")):
        heads = config.num_attention_heads if "q_proj" in source else config.num_key_value_heads
        data = rope_interleaved(data, heads)
    return gguf.quants.quantize(data.numpy(), qtype)


def rope_interleaved(weight: Any, heads: int) -> Any:
    """Rows of a Q or K projection reordered from HF's rotate-half rope layout (each head's
    first half of dimensions, then its second) to llama.cpp's pairs (0, half), (1, half+1)."""
    rows = weight.shape[0]
    half = rows // heads // 2
    return (weight.reshape(heads, 2, half, *weight.shape[1:]).transpose(1, 2)
            .reshape(weight.shape))


# hyperparameters --------------------------------------------------------------------------
def _add_hyperparameters(writer: Any, config: Any, quantize: str) -> None:
    import gguf

    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(heads)
    writer.add_head_count_kv(getattr(config, "num_key_value_heads", None) or heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_freq_base(_rope_theta(config))
    writer.add_rope_dimension_count(head_dim)
    if head_dim != config.hidden_size // heads:  # Qwen3, Mistral Nemo: heads wider than d/n
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    writer.add_vocab_size(config.vocab_size)
    file_types = {"f16": gguf.LlamaFileType.MOSTLY_F16, "bf16": gguf.LlamaFileType.MOSTLY_BF16,
                  "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}
    writer.add_file_type(file_types[quantize])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    scaling = _rope_parameters(config)
    if scaling.get("rope_type") == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(scaling["factor"]))


def _rope_parameters(config: Any) -> dict[str, Any]:
    """The rope settings, refused when llama.cpp would need more than we write."""
    params = dict(getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling",
                                                                        None) or {})
    kind = params.get("rope_type") or params.get("type") or "default"
    if kind not in ("default", "linear", "llama3"):
        raise UsageError(f"GGUF export does not write {kind} rope scaling yet",
                         fix="use --format hf for this model")
    return {**params, "rope_type": kind}


def _rope_theta(config: Any) -> float:
    params = getattr(config, "rope_parameters", None) or {}
    return float(params.get("rope_theta") or getattr(config, "rope_theta", 10000.0))


def _llama3_rope(config: Any) -> bool:
    return _rope_parameters(config)["rope_type"] == "llama3"


def _rope_freqs(config: Any) -> Any:
    """llama.cpp's per-frequency divisors for Llama 3.1 rope scaling: the plain inverse
    frequencies over the scaled ones transformers computes."""
    import torch
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    scaled, _ = ROPE_INIT_FUNCTIONS["llama3"](config, "cpu")
    heads = config.num_attention_heads
    dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    plain = 1.0 / (_rope_theta(config) ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    return plain / scaled.float()


def _model_arch(arch: str) -> Any:
    import gguf

    return next(key for key, value in gguf.MODEL_ARCH_NAMES.items() if value == arch)
