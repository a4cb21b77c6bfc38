"""Training throughput: plain TRL SFTTrainer against tunelab's loop, on the same data.

    .venv/bin/python bench/train_throughput.py               # TRL, then tunelab (30 steps each)
    .venv/bin/python bench/train_throughput.py --steps 10    # shorter, noisier
    .venv/bin/python bench/train_throughput.py --table       # + one run per lever
    .venv/bin/python bench/train_throughput.py --interleaved 3   # levers, same real batches

Each run is its own subprocess, so its peak RSS (from os.wait4) is its own. Both count
tokens the same way: the non-padding tokens of the batches they trained on, over the wall
time of the training call (model loading and tokenization excluded; both reported apart).
"Final loss" is each trainer's own last logged loss; the two differ in definition (TRL's
defaults put the loss on every token, tunelab on assistant tokens only), so both final
models are also scored by one function, `ChatModel.validation` (assistant tokens, fp32), on
the same examples: that is the "eval loss" column, the one to compare.

Both get the same LoRA (r=16, alpha=32, dropout 0, all-linear), batch 4, max length 512,
learning rate and linear schedule without warmup; TRL keeps its other defaults (gradient
checkpointing on, fp32 as asked here). A timing on a shared machine is only as good as its
load average, which is printed next to every figure. See bench/README.md for results.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO / "examples" / "natasha_train.jsonl"

# Each tunelab variant switches levers off one at a time from the default, so each row
# shows what one lever is worth. "env" entries go to the child's environment (None unsets).
VARIANTS: dict[str, dict[str, Any]] = {
    "trl": {"engine": "trl"},
    "trl-no-ckpt": {"engine": "trl", "gradient_checkpointing": False},
    "tunelab": {"engine": "tunelab"},
    "tunelab-bf16": {"engine": "tunelab", "precision": "bf16"},
    "tunelab-unfused-loss": {"engine": "tunelab", "unfused_loss": True},
    "tunelab-glibc": {"engine": "tunelab", "allocator": "glibc"},
    "tunelab-glibc-default": {"engine": "tunelab", "allocator": "glibc", "glibc_default": True},
    "tunelab-unfused-mlp": {"engine": "tunelab", "unfused_mlp": True},
    "tunelab-unfused-lora": {"engine": "tunelab", "unfused_lora": True},
    "tunelab-padding-mask": {"engine": "tunelab", "padding_mask": True},
    "tunelab-unfused-norm": {"engine": "tunelab", "unfused_norm": True},
    "tunelab-no-grouping": {"engine": "tunelab", "grouping": False},
    "tunelab-full-logits": {"engine": "tunelab", "full_logits": True},
    "tunelab-kernels-off": {"engine": "tunelab", "kernels": "off"},
    "tunelab-plain": {"engine": "tunelab", "grouping": False, "kernels": "off",
                      "allocator": "glibc", "glibc_default": True},
    "tunelab-1-thread": {"engine": "tunelab", "threads": 1},
    "tunelab-omp-passive": {"engine": "tunelab", "env": {"OMP_WAIT_POLICY": "PASSIVE"}},
    "tunelab-omp-default": {"engine": "tunelab", "env": {"OMP_WAIT_POLICY": None}},
}
TABLE = ["trl", "trl-no-ckpt", "tunelab-plain", "tunelab-bf16", "tunelab-unfused-loss",
         "tunelab-glibc", "tunelab-glibc-default", "tunelab-unfused-mlp", "tunelab-unfused-lora",
         "tunelab-padding-mask", "tunelab-unfused-norm", "tunelab-no-grouping",
         "tunelab-full-logits", "tunelab-kernels-off", "tunelab"]


# parent: run each variant in its own process ---------------------------------------------
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return run_worker(json.loads(args.worker))
    if args.interleaved:
        return interleaved_steps(args)
    data = args.data if args.data.is_file() else write_fallback_data(args.steps)
    model_dir = converted_model_dir()  # converted here once, outside any measured child
    names = TABLE if args.table else args.variants.split(",")
    results = []
    for name in names:
        spec = {**VARIANTS[name], "name": name, "data": str(data), "model_dir": str(model_dir),
                "steps": args.steps, "batch_size": args.batch_size,
                "max_length": args.max_length, "lora_r": args.lora_r, "lr": args.lr,
                "seed": args.seed, "eval_examples": args.eval_examples}
        if args.threads and "threads" not in spec:
            spec["threads"] = args.threads
        print(f"running {name} ... (load {load_average()})", file=sys.stderr, flush=True)
        results.append(run_child(spec))
        print(describe(results[-1]), file=sys.stderr, flush=True)
    print_table(results, data)
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps per run")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="a .jsonl of chats (a generated set is used if it is missing)")
    parser.add_argument("--variants", default="trl,tunelab",
                        help=f"comma-separated, from: {', '.join(VARIANTS)}")
    parser.add_argument("--table", action="store_true", help=f"run {', '.join(TABLE)}")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-4, help="the same for every run")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's)")
    parser.add_argument("--eval-examples", type=int, default=16,
                        help="examples scored by the common eval loss after training")
    parser.add_argument("--json-out", type=Path, help="also write the results here")
    parser.add_argument("--interleaved", type=int, default=0, metavar="ROUNDS",
                        help="time one train step per lever on the same batch, round-robin "
                             "in one process (noise hits every lever alike)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def run_child(spec: dict[str, Any], script: str = __file__) -> dict[str, Any]:
    """Run one variant in a fresh process (`script --worker SPEC`: this bench's or another's
    that shares it); its result plus its own peak RSS."""
    env = {**os.environ, **spec.get("env", {})}
    if spec["engine"] == "tunelab" and spec.get("allocator") != "glibc":
        from tunelab.local.memory import allocator_env

        env.update(allocator_env(env))  # as `tunelab train` re-executes itself
    env = {key: value for key, value in env.items() if value is not None}
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        out = Path(handle.name)
    spec = {**spec, "out": str(out)}
    load_before = load_average()
    began = time.perf_counter()
    child = subprocess.Popen([sys.executable, script, "--worker", json.dumps(spec)], env=env)
    _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage, not a running max
    child.returncode = os.waitstatus_to_exitcode(status)
    result = {"name": spec["name"], "exit_code": child.returncode,
              "process_s": round(time.perf_counter() - began, 1),
              "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),  # Linux reports KiB
              "load_before": load_before, "load_after": load_average()}
    if child.returncode == 0:
        result.update(json.loads(out.read_text(encoding="utf-8")))
    out.unlink(missing_ok=True)
    return result


# child: train one variant ------------------------------------------------------------------
def run_worker(spec: dict[str, Any]) -> int:
    import torch

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    examples = read_examples(Path(spec["data"]))
    train = train_trl if spec["engine"] == "trl" else train_tunelab
    result = train(spec, examples)
    result["threads"] = torch.get_num_threads()
    result["eval_loss"] = round(eval_loss(result.pop("model"), spec, examples), 4)
    Path(spec["out"]).write_text(json.dumps(result), encoding="utf-8")
    return 0


def train_trl(spec: dict[str, Any], examples: list[dict]) -> dict[str, Any]:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    began = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(spec["model_dir"])
    model = AutoModelForCausalLM.from_pretrained(spec["model_dir"], dtype="float32")
    rows = [{"messages": [{"role": m["role"], "content": m["content"]} for m in ex["messages"]]}
            for ex in examples]
    with tempfile.TemporaryDirectory() as scratch:
        config = SFTConfig(
            output_dir=scratch, per_device_train_batch_size=spec["batch_size"],
            max_length=spec["max_length"], max_steps=spec["steps"], learning_rate=spec["lr"],
            lr_scheduler_type="linear", warmup_steps=0, logging_steps=1, report_to="none",
            bf16=False, use_cpu=True, save_strategy="no", seed=spec["seed"],
            disable_tqdm=True,
            gradient_checkpointing=spec.get("gradient_checkpointing", True))
        trainer = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows),
                             processing_class=tokenizer, peft_config=lora_config(spec))
        counter = TokenCounter(trainer.data_collator)
        trainer.data_collator = counter
        setup_s = time.perf_counter() - began
        began = time.perf_counter()
        trainer.train()
        train_s = time.perf_counter() - began
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    model = trainer.model
    model.eval()
    return summary(counter.tokens, train_s, setup_s, losses, model, tokenizer)


def lora_config(spec: dict[str, Any]) -> Any:
    from peft import LoraConfig

    return LoraConfig(r=spec["lora_r"], lora_alpha=32, lora_dropout=0.0,
                      target_modules="all-linear", task_type="CAUSAL_LM")


class TokenCounter:
    """Wraps a collator and counts the non-padding tokens of every batch it builds."""

    def __init__(self, collate: Any) -> None:
        self.collate, self.tokens = collate, 0

    def __call__(self, features: list[dict]) -> dict[str, Any]:
        batch = self.collate(features)
        self.tokens += int(batch["attention_mask"].sum())
        return batch


def train_tunelab(spec: dict[str, Any], examples: list[dict]) -> dict[str, Any]:
    from tunelab.config import TrainConfig
    from tunelab.local import prepare, trainer
    from tunelab.local.model_source import load_tokenizer
    from tunelab.local.state import TrainState

    apply_levers(spec, trainer)
    began = time.perf_counter()
    config = TrainConfig(
        train_file=spec["data"], model=spec["model_dir"], batch_size=spec["batch_size"],
        max_length=spec["max_length"], lora_r=spec["lora_r"], lora_alpha=32, lora_dropout=0.0,
        learning_rate=spec["lr"], lr_scheduler="linear", warmup_ratio=0.0,
        max_steps=spec["steps"], precision=spec.get("precision", "auto"), save_every=None,
        max_samples=0, seed=spec["seed"], kernels=spec.get("kernels", "auto"))
    tokenizer = load_tokenizer(config.model)
    data = prepare.tokenize(config, tokenizer, prepare.Examples(examples, None))
    session = trainer.setup(config, tokenizer, data.train, None,
                            base_ref=prepare.base_model_ref(config.model))
    hooks = LossHooks()
    state = TrainState()
    setup_s = time.perf_counter() - began
    with tempfile.TemporaryDirectory() as run_dir:
        began = time.perf_counter()
        trainer.train(session, state, hooks, Path(run_dir))
        train_s = time.perf_counter() - began
    model = session.model
    model.eval()
    return summary(state.trained_tokens, train_s, setup_s, hooks.losses, model, tokenizer)


# Variant flags that leave one kernel out (tunelab.local.kernels names them).
KERNEL_LEVERS = {"unfused_mlp": "gated_mlp", "unfused_lora": "lora_linear",
                 "unfused_norm": "rms_norm", "padding_mask": "causal_padding",
                 "full_logits": "chunked_loss"}


def apply_levers(spec: dict[str, Any], trainer: Any) -> None:
    """Switch off the levers this variant measures without, in this process only."""
    from tunelab.local import kernels
    from tunelab.local.kernels import chunked_loss

    if spec.get("grouping") is False:
        trainer.epoch_batches = shuffled_batches
    if spec.get("unfused_loss"):
        chunked_loss.projected_cross_entropy = gathered_cross_entropy
    if spec.get("glibc_default"):
        trainer.keep_freed_memory = lambda: False
    left_out = {kernel for flag, kernel in KERNEL_LEVERS.items() if spec.get(flag)}
    if left_out:  # the trainer calls kernels.apply(model, config.kernels)
        kernels.apply = partial(kernels.apply, without=left_out)


def shuffled_batches(lengths: list[int], batch_size: int, seed: int,
                     epoch: int) -> list[list[int]]:
    """Plain shuffled batches, no length grouping (what a generic sampler does)."""
    order = list(range(len(lengths)))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def gathered_cross_entropy(hidden: Any, weight: Any, targets: Any, workspace: Any,
                           **counts: Any) -> Any:
    """The chunked loss's projection done the usual way: the gathered positions' whole
    logits tensor, then cross_entropy (what the chunked kernel avoids)."""
    import torch
    from torch import nn

    logits = nn.functional.linear(hidden, weight.to(hidden.dtype))
    if counts.get("correct") is not None:  # the token-accuracy count, where it is asked for
        with torch.no_grad():
            counts["correct"] += (logits.argmax(dim=1) == targets).sum()
    return nn.functional.cross_entropy(logits, targets, reduction="sum")


class LossHooks:
    def __init__(self) -> None:
        self.losses: list[float] = []
        self.accuracies: list[float | None] = []  # DPO's reward accuracy, where there is one

    def on_step(self, state: Any, report: Any) -> None:
        self.losses.append(report.train_loss)
        self.accuracies.append(next((value for name, value in report.method_metrics.items()
                                     if "reward_accuracy" in name), None))

    def on_validation(self, *args: Any) -> None: ...

    def on_checkpoint(self, *args: Any) -> None: ...


def summary(tokens: int, train_s: float, setup_s: float, losses: list[float], model: Any,
            tokenizer: Any) -> dict[str, Any]:
    return {"tokens": tokens, "train_s": round(train_s, 1), "setup_s": round(setup_s, 1),
            "tokens_per_s": round(tokens / train_s, 1), "steps": len(losses),
            "final_loss": round(losses[-1], 4) if losses else None,
            "losses": [round(loss, 4) for loss in losses], "model": (model, tokenizer)}


def eval_loss(model_and_tokenizer: tuple[Any, Any], spec: dict[str, Any],
              examples: list[dict]) -> float:
    """Assistant-token loss of the trained model, fp32, by the same code for every run."""
    from tunelab.local.inference import ChatModel

    model, tokenizer = model_and_tokenizer
    model.float()
    return ChatModel(spec["name"], model, tokenizer).validation(
        examples[: spec["eval_examples"]]).loss


# interleaved: the levers on the same real batches, in one process ------------------------------
INTERLEAVED_BATCHES = 6


def interleaved_steps(args: argparse.Namespace) -> int:
    """Seconds per lever for the same real batches (forward+backward+AdamW), interleaved.

    Load on a shared machine drifts over minutes; each batch is trained by every lever in
    turn, round after round, so drift hits all of them alike and their ratios hold. The
    process runs under mimalloc, as `tunelab train` does (it re-executes itself).
    """
    import statistics

    import torch

    from tunelab.local.memory import ALLOCATOR_FLAG, keep_freed_memory, reexec_with_allocator

    reexec_with_allocator([__file__, *sys.argv[1:]])
    keep_freed_memory()  # as the trainer does where mimalloc is missing
    batches, model = first_batches(args)
    toggles = LeverToggles(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.0)
    tokens = sum(int(batch["attention_mask"].sum()) for batch in batches)
    times: dict[str, list[float]] = {name: [] for name in INTERLEAVED_LEVERS}
    for _ in range(args.interleaved + 1):  # the first round warms up and is dropped
        spent = dict.fromkeys(INTERLEAVED_LEVERS, 0.0)
        for batch in batches:
            for name, lever in INTERLEAVED_LEVERS.items():
                loss_model = toggles.apply(lever)
                began = time.perf_counter()
                with torch.autocast("cpu", torch.bfloat16, enabled=lever == "bf16"):
                    loss = loss_model(**batch)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
                spent[name] += time.perf_counter() - began
        for name, seconds in spent.items():
            times[name].append(seconds)
    shapes = ", ".join(f"{b['input_ids'].shape[0]}x{b['input_ids'].shape[1]}" for b in batches)
    print(f"{len(batches)} batches ({shapes}; {tokens} tokens), {args.interleaved} rounds, "
          f"torch threads {torch.get_num_threads()}, allocator "
          f"{os.environ.get(ALLOCATOR_FLAG, 'glibc')}, load {load_average()}")
    default = times["default (every lever)"][1:]
    for name, values in times.items():
        rounds = values[1:]
        ratios = [other / mine for mine, other in zip(rounds, default, strict=True)]
        print(f"  {name:34} {tokens / statistics.median(rounds):7.1f} tok/s   speed vs "
              f"default: median {statistics.median(ratios):4.2f}x "
              f"(rounds {min(ratios):4.2f} to {max(ratios):4.2f})")
    return 0


# Each interleaved lever switches one thing off from what `tunelab train` does.
INTERLEAVED_LEVERS = {"default (every lever)": None, "peft LoRA forward": "peft_lora",
                      "transformers RMSNorm": "hf_norm", "padding mask": "padding_mask",
                      "gathered logits + cross_entropy": "unfused_loss",
                      "bf16 autocast": "bf16"}


class LeverToggles:
    """Switches the trainer's levers on one model off and on again, in place."""

    def __init__(self, model: Any) -> None:
        from tunelab.local.kernels import chunked_loss, lora_linear, rms_norm

        self.loss_module = chunked_loss
        self.chunked = chunked_loss.projected_cross_entropy
        self.lora = [m for m in model.modules() if hasattr(m, "lora_A")]
        self.norms = [m for m in model.modules() if type(m).__name__.endswith("RMSNorm")]
        plain = {m: m.forward for m in self.lora + self.norms}
        lora_linear.use_fused_lora(model)
        rms_norm.use_fused_rms_norm(model)
        self.forwards = {m: (plain[m], m.forward) for m in plain}
        self.loss = chunked_loss.ChunkedAssistantLoss(model)
        self.masked_loss = chunked_loss.ChunkedAssistantLoss(model, causal_padding=False)

    def apply(self, lever: str | None) -> Any:
        for module, (plain, fused) in self.forwards.items():
            off = (lever == "peft_lora" and module in self.lora) or (
                lever == "hf_norm" and module in self.norms)
            module.forward = plain if off else fused
        self.loss_module.projected_cross_entropy = (
            gathered_cross_entropy if lever == "unfused_loss" else self.chunked)
        return self.masked_loss if lever == "padding_mask" else self.loss


def first_batches(args: argparse.Namespace) -> tuple[list[dict[str, Any]], Any]:
    """A LoRA model (gated MLP fused, as the trainer) and epoch 0's first real batches."""
    from peft import get_peft_model

    from tunelab.local import encoding
    from tunelab.local.batching import collate, epoch_batches
    from tunelab.local.kernels.gated_mlp import use_fused_mlp
    from tunelab.local.model_source import load_model, load_tokenizer

    data = args.data if args.data.is_file() else write_fallback_data(args.steps)
    tokenizer = load_tokenizer(None)
    items = encoding.encode_examples(tokenizer, read_examples(data), args.max_length).items
    order = epoch_batches([len(item) for item in items], args.batch_size, args.seed, 0)
    batches = [collate([items[i] for i in indexes], tokenizer.pad_token_id)
               for indexes in order[:INTERLEAVED_BATCHES]]
    model = get_peft_model(load_model(None), lora_config({"lora_r": args.lora_r}))
    use_fused_mlp(model)
    return batches, model


# data ----------------------------------------------------------------------------------------
def read_examples(path: Path) -> list[dict]:
    from tunelab.data.reader import load_examples

    return load_examples(path)


def write_fallback_data(steps: int) -> Path:
    """A generated chat set, for when examples/natasha_train.jsonl is not there."""
    rng = random.Random(0)
    words = ["мысль", "образ", "путь", "дверь", "свет", "тень", "выбор", "страх", "шаг",
             "time", "road", "light", "fear", "choice", "courage", "question", "door", "step"]
    path = Path(tempfile.gettempdir()) / "tunelab-bench-chats.jsonl"
    with open(path, "w", encoding="utf-8") as handle:
        for _ in range(max(64, steps * 4)):
            ask = " ".join(rng.choices(words, k=rng.randint(8, 40)))
            answer = " ".join(rng.choices(words, k=rng.randint(20, 160)))
            handle.write(json.dumps({"messages": [
                {"role": "system", "content": "You are Natasha, a warm, provocative coach."},
                {"role": "user", "content": ask}, {"role": "assistant", "content": answer}]},
                ensure_ascii=False) + "\n")
    print(f"{DEFAULT_DATA} not found: using generated chats in {path}", file=sys.stderr)
    return path


def converted_model_dir() -> Path:
    from tunelab.local.model_source import resolve_model_dir

    return resolve_model_dir(None)


# report --------------------------------------------------------------------------------------
def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def describe(result: dict[str, Any]) -> str:
    if result["exit_code"]:
        return f"  {result['name']}: failed with exit code {result['exit_code']}"
    return (f"  {result['name']}: {result['tokens_per_s']} tok/s, {result['train_s']} s, "
            f"loss {result['final_loss']}, eval loss {result['eval_loss']}, "
            f"peak RSS {result['peak_rss_mb']} MB")


def print_table(results: list[dict[str, Any]], data: Path) -> None:
    ok = [result for result in results if not result["exit_code"]]
    reference = next((result for result in ok if result["name"] == "trl"), None)
    print(f"data: {data}  cpu cores: {os.cpu_count()}  "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}")
    header = (f"{'run':22} {'tok/s':>8} {'x trl':>6} {'train s':>8} {'steps':>5} "
              f"{'final loss':>10} {'eval loss':>9} {'vs trl':>7} {'peak MB':>8} {'vs trl':>7} "
              f"{'threads':>7}  load before -> after")
    print(header)
    for result in ok:
        speed = ratio(result, reference, "tokens_per_s", "{:.2f}x")
        loss = ratio(result, reference, "eval_loss", "{:+.1%}", minus_one=True)
        memory = ratio(result, reference, "peak_rss_mb", "{:+.0%}", minus_one=True)
        print(f"{result['name']:22} {result['tokens_per_s']:>8} {speed:>6} "
              f"{result['train_s']:>8} {result['steps']:>5} {result['final_loss']!s:>10} "
              f"{result['eval_loss']:>9} {loss:>7} {result['peak_rss_mb']:>8} {memory:>7} "
              f"{result['threads']:>7}  {result['load_before']} -> {result['load_after']}")
    for result in results:
        if result["exit_code"]:
            print(f"{result['name']:22} failed (exit code {result['exit_code']})")


def ratio(result: dict[str, Any], reference: dict[str, Any] | None, key: str, form: str,
          minus_one: bool = False) -> str:
    if not reference or not reference.get(key):
        return "-"
    value = result[key] / reference[key]
    return form.format(value - 1 if minus_one else value)


if __name__ == "__main__":
    sys.exit(main())
