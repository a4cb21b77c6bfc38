"""The dry run's config-only estimates for a few open models by name, for README's "Train on
an open model by name" section: parameters, download size (bf16 safetensors), memory for the
default LoRA run on this CPU (fp32) and on a GPU (bf16 autocast), and time per epoch of the
sample persona two ways: the dry run's formula at this machine's measured matmul rate
(probe), and the embedded model's measured tokens/s scaled by FLOPs per token (scaled).

No network here, so the configs are copied from their config.json files as published on the
hub (sources beside each); `tunelab train FILE --model NAME --dry-run` computes the same from
the real file.

    .venv/bin/python bench/named_model_estimates.py
"""

from __future__ import annotations

from unittest import mock

from tunelab.config import TrainConfig
from tunelab.local import estimate as estimates
from tunelab.local.catalog import parameter_count

CONFIGS = {
    # the embedded default: its converted folder's config.json (tunelab's cache)
    "HuggingFaceTB/SmolLM2-135M-Instruct": {
        "model_type": "llama", "hidden_size": 576, "intermediate_size": 1536,
        "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
        "vocab_size": 49152, "tie_word_embeddings": True, "max_position_embeddings": 8192},
    # huggingface.co/Qwen/Qwen2.5-0.5B-Instruct/blob/main/config.json (as quoted for
    # Qwen2.5-0.5B in public code; the card: 0.49B parameters, 24 layers, 14/2 heads, tied)
    "Qwen/Qwen2.5-0.5B-Instruct": {
        "model_type": "qwen2", "hidden_size": 896, "intermediate_size": 4864,
        "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
        "vocab_size": 151936, "tie_word_embeddings": True,
        "max_position_embeddings": 32768},
    # huggingface.co/meta-llama/Llama-3.2-1B-Instruct/blob/main/config.json (as quoted with
    # its _commit_hash 4e20de36 in kevinstephano/thunder_model_blocks hf_llama/llama_config.py)
    "meta-llama/Llama-3.2-1B-Instruct": {
        "model_type": "llama", "hidden_size": 2048, "intermediate_size": 8192,
        "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8,
        "head_dim": 64, "vocab_size": 128256, "tie_word_embeddings": True,
        "max_position_embeddings": 131072},
    # huggingface.co/Qwen/Qwen3-1.7B/blob/main/config.json (its shapes as in
    # zyzshishui/slime scripts/models/qwen3-1.7B.sh; the card: 1.7B, 1.4B non-embedding)
    "Qwen/Qwen3-1.7B": {
        "model_type": "qwen3", "hidden_size": 2048, "intermediate_size": 6144,
        "num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 8,
        "head_dim": 128, "vocab_size": 151936, "tie_word_embeddings": True,
        "max_position_embeddings": 40960},
    # huggingface.co/meta-llama/Llama-3.1-8B-Instruct/blob/main/config.json (Llama-3.1-8B's
    # as quoted in citsjtu2020/LLM-Prof sglang/Model_Config.md)
    "meta-llama/Llama-3.1-8B-Instruct": {
        "model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336,
        "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
        "vocab_size": 128256, "tie_word_embeddings": False,
        "max_position_embeddings": 131072},
}
SAMPLE_TOKENS = 56_585  # examples/natasha_train.jsonl, one epoch, as SmolLM2 counts it
# The embedded model's dry run on the idle 2-core development CPU (fp32, default run):
# design.md's "186 tok/s"; the other models scale by training FLOPs per token.
EMBEDDED_TOKENS_PER_S = 186.0


def main() -> None:
    config = TrainConfig(train_file="examples/natasha_train.jsonl")
    rate = estimates.matmul_flops("cpu")
    print(f"matmul here: {rate / 1e9:.1f} GFLOP/s; default run: LoRA r={config.lora_r}, "
          f"batch {config.batch_size} x {config.max_length}")
    embedded = parameter_count(CONFIGS["HuggingFaceTB/SmolLM2-135M-Instruct"])
    for name, model in CONFIGS.items():
        params = parameter_count(model)
        scaled = EMBEDDED_TOKENS_PER_S * embedded / params  # LoRA: 4 x parameters a token
        row = [name, f"{params / 1e9:.2f}B", f"{params * 2 / 1e9:.1f} GB"]
        for device, precision in (("cpu", "fp32"), ("cuda", "bf16")):
            with mock.patch.object(estimates, "machine_device", return_value=(device, precision)), \
                    mock.patch.object(estimates, "machine_memory", return_value=0), \
                    mock.patch.object(estimates, "matmul_flops", return_value=rate):
                found = estimates.estimate(model, config, params)
            row.append(f"{found.total_bytes / 1e9:.1f} GB")
            if device == "cpu":
                row.append(f"probe: {found.tokens_per_s:.1f} tok/s, "
                           f"{SAMPLE_TOKENS / found.tokens_per_s / 60:.0f} min/epoch")
        row.append(f"scaled: {scaled:.0f} tok/s, {SAMPLE_TOKENS / scaled / 60:.0f} min/epoch")
        print(" | ".join(row))


if __name__ == "__main__":
    main()
