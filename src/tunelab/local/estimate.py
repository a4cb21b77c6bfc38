"""How much memory and time a local run of a model will take, from its config alone.

The dry run uses this before any weights are here (a hub id not yet downloaded), and
training's preflight refuses a model that would not fit. Where the weights are here the dry
run also times real steps (dryrun.measure); this is the estimate for when they are not.

Memory (the trainer loads weights in fp32 and trains in fp32 on a CPU, bf16 autocast on a
GPU that has it):
    weights        parameters x 4 bytes
    training state LoRA: the adapters' weights, gradients and AdamW moments (16 bytes per
                   adapter parameter); --full: gradients and AdamW moments, 12 bytes per
                   parameter more
    activations    batch x max_length x layers x (10 hidden + 3 intermediate) values kept for
                   backward (4 bytes each, 2 under bf16), plus the logits of a batch when the
                   chunked loss is off (kernels off)
    runtime        ~0.5 GB: Python, torch, the tokenizer, the data
Checked on the embedded SmolLM2-135M (the default run: LoRA r=16, batch 2 x 512, kernels
auto, 2-core CPU): this says 2.5 GB; the dry run's measured peak RSS was 2.2 GB.

Time: training FLOPs per token (forward 2N, backward 2N more for LoRA's activation
gradients, 4N for --full's weight gradients too; N = parameters that multiply, without the
embedding lookup), divided by this machine's measured matmul rate times the share of it a
training step reaches (STEP_EFFICIENCY, a rough guess: see there).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from tunelab.config import TrainConfig
from tunelab.errors import UsageError

RUNTIME_BYTES = 500 * 2**20
# Share of the measured matmul FLOP/s a whole training step reaches (attention, norms, the
# optimizer, Python between kernels). NOT calibrated: a round guess. On the shared 2-core
# development box under load the probe gave ~31 GFLOP/s and the embedded model's timed steps
# 5.3 tok/s (0.09 of it); idle, that model trains at 186 tok/s, with no probe measured then.
# Where the weights are here the dry run times real steps instead.
STEP_EFFICIENCY = {"cpu": 0.35, "cuda": 0.4}
LINEAR_MODULES = 7  # q, k, v, o, gate, up, down: what "all-linear" puts adapters on


@dataclass(frozen=True)
class Estimate:
    parameters: int
    device: str
    precision: str
    weights_bytes: int
    training_state_bytes: int
    activation_bytes: int
    runtime_bytes: int
    machine_bytes: int  # this machine's memory (RAM, or the GPU's)
    flops_per_token: float
    tokens_per_s: float | None = None
    method: str = ""

    @property
    def total_bytes(self) -> int:
        return (self.weights_bytes + self.training_state_bytes + self.activation_bytes
                + self.runtime_bytes)

    @property
    def fits(self) -> bool:
        return self.total_bytes <= self.machine_bytes

    def seconds_for(self, tokens: int) -> float | None:
        return tokens / self.tokens_per_s if self.tokens_per_s else None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total_bytes": self.total_bytes, "fits": self.fits,
                "memory_gb": round(self.total_bytes / 1e9, 2),
                "machine_gb": round(self.machine_bytes / 1e9, 2)}


def estimate(model_config: dict[str, Any], config: TrainConfig, parameters: int, *,
             timed: bool = True) -> Estimate:
    """Memory and speed of training `config` on the model `model_config` describes."""
    from tunelab.local.catalog import text_config

    text = text_config(model_config)
    hidden = int(text.get("hidden_size") or 0)
    layers = int(text.get("num_hidden_layers") or 0)
    inner = int(text.get("intermediate_size") or 4 * hidden)
    vocab = int(text.get("vocab_size") or 0)
    device, precision = machine_device(config)
    value_bytes = 2 if precision == "bf16" else 4
    tokens = config.batch_size * config.max_length
    adapter = layers * LINEAR_MODULES * config.lora_r * (2 * hidden + inner) if hidden else 0
    state = parameters * 12 if config.full else adapter * 16
    activations = tokens * layers * (10 * hidden + 3 * inner) * value_bytes
    if config.kernels == "off":
        activations += tokens * vocab * 4 * 2  # logits and their gradient, in fp32
    multiplying = parameters - vocab * hidden * (0 if text.get("tie_word_embeddings", True)
                                                 else 1)
    flops = (6.0 if config.full else 4.0) * multiplying
    rate = matmul_flops(device) * STEP_EFFICIENCY.get(device, 0.35) if timed else None
    return Estimate(parameters=parameters, device=device, precision=precision,
                    weights_bytes=parameters * 4, training_state_bytes=state,
                    activation_bytes=activations, runtime_bytes=RUNTIME_BYTES,
                    machine_bytes=machine_memory(device), flops_per_token=flops,
                    tokens_per_s=round(rate / flops, 1) if rate and flops else None,
                    method="from the model's config (no weights loaded): memory = weights + "
                           "training state + activations + runtime; tokens/s = this machine's "
                           f"matmul FLOP/s x {STEP_EFFICIENCY.get(device, 0.35)} / "
                           f"{'6' if config.full else '4'} x parameters")


def machine_device(config: TrainConfig) -> tuple[str, str]:
    import torch

    from tunelab.local.trainer import effective_precision

    return ("cuda" if torch.cuda.is_available() else "cpu"), effective_precision(config)


def machine_memory(device: str) -> int:
    if device == "cuda":
        import torch

        return int(torch.cuda.get_device_properties(0).total_memory)
    import psutil

    return int(psutil.virtual_memory().total)


def matmul_flops(device: str, seconds: float = 0.3) -> float:
    """This machine's sustained matmul rate (FLOP/s) at a training step's shapes, measured
    for about `seconds`."""
    import torch

    size = 2048 if device == "cuda" else 1024
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b  # warm-up
    done, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        a @ b
        done += 1
    if device == "cuda":
        torch.cuda.synchronize()
    return 2 * size**3 * done / (time.perf_counter() - began)


def check_fits(name: str, found: Estimate, config: TrainConfig) -> None:
    """Refuse a run whose estimate is over this machine's memory, saying by how much."""
    if found.fits:
        return
    short = found.total_bytes - found.machine_bytes
    where = "the GPU's memory" if found.device == "cuda" else "this machine's RAM"
    method = "full fine-tuning" if config.full else f"LoRA r={config.lora_r}"
    raise UsageError(f"model {name}: {method} at batch {config.batch_size} x {config.max_length} "
                     f"tokens needs about {found.total_bytes / 1e9:.1f} GB and {where} is "
                     f"{found.machine_bytes / 1e9:.1f} GB: {short / 1e9:.1f} GB short",
                     fix="lower --batch-size or --max-length"
                         + ("" if not config.full else ", train LoRA (--lora)")
                         + ", or pick a smaller model; `--dry-run` shows the estimate")
