"""Preference tuning (DPO) throughput: TRL's DPOTrainer against tunelab's DPO, same pairs.

    .venv/bin/python bench/dpo_vs_trl.py               # TRL, tunelab, tunelab again (cached)
    .venv/bin/python bench/dpo_vs_trl.py --steps 6     # shorter, noisier

The pairs are made from examples/natasha_train.jsonl with no generation: each question's
own answer is preferred, the next example's answer is not (real lengths, a learnable
signal). Both sides get the same pairs in the same order, fp32, LoRA r=16 (alpha 32,
dropout 0, all-linear), batch 4, max length 512, beta 0.1, the same learning rate and a
linear schedule without warmup, and precomputed reference log-probs: TRL's
`precompute_ref_log_probs=True` (in the trainer's constructor), tunelab's on-disk cache
(computed before the loop). The reference pass is timed apart from training on both sides.
TRL keeps its other defaults (gradient checkpointing on; `trl-no-ckpt` turns it off).

Tokens are the non-padding tokens of the sequences each trainer ran (a pair is two
sequences, the prompt counted in both), over the wall time of the training call. "tunelab
(cached)" is a second tunelab run on the same pairs: its reference log-probs come from the
cache written by the first, so its "ref s" is the cache read. Each run is its own process,
so its peak RSS is its own. See bench/README.md for results.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from train_throughput import (
    REPO,
    LossHooks,
    TokenCounter,
    converted_model_dir,
    load_average,
    lora_config,
    read_examples,
    run_child,
)

DEFAULT_DATA = REPO / "examples" / "natasha_train.jsonl"
VARIANTS: dict[str, dict[str, Any]] = {
    "trl": {"engine": "trl"},
    "trl-no-ckpt": {"engine": "trl", "gradient_checkpointing": False},
    "tunelab": {"engine": "tunelab"},
    "tunelab (cached)": {"engine": "tunelab", "cached": True},
}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return run_worker(json.loads(args.worker))
    pairs_file = write_pairs(args.data, args.steps * args.batch_size)
    model_dir = converted_model_dir()
    home = Path(tempfile.mkdtemp(prefix="dpo-bench-home-"))  # one cache for both tunelab runs
    results = []
    for name in args.variants.split(","):
        spec = {**VARIANTS[name], "name": name, "pairs": str(pairs_file),
                "model_dir": str(model_dir), "steps": args.steps,
                "batch_size": args.batch_size, "max_length": args.max_length,
                "lora_r": args.lora_r, "lr": args.lr, "beta": args.beta, "seed": args.seed,
                "env": {"TUNELAB_HOME": str(home)}}
        print(f"running {name} ... (load {load_average()})", file=sys.stderr, flush=True)
        results.append(run_child(spec, script=__file__))
        print(describe(results[-1]), file=sys.stderr, flush=True)
    print_table(results, pairs_file)
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps per run")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="a .jsonl of chats the pairs are made from")
    parser.add_argument("--variants", default="trl,tunelab,tunelab (cached)",
                        help=f"comma-separated, from: {', '.join(VARIANTS)}")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-5, help="the same for every run")
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json-out", type=Path, help="also write the results here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def write_pairs(data: Path, count: int) -> Path:
    """`count` OpenAI preference rows from a chat file (one epoch of the run's steps, so
    both reference passes cover just what is trained): the answer given is preferred, the
    next example's answer is not."""
    examples = read_examples(data)[:count]
    answers = [example["messages"][-1]["content"] for example in examples]
    out = Path(tempfile.mkdtemp(prefix="dpo-bench-")) / "pairs.jsonl"
    with out.open("w", encoding="utf-8") as handle:
        for index, example in enumerate(examples):
            row = {"input": {"messages": example["messages"][:-1]},
                   "preferred_output": [{"role": "assistant", "content": answers[index]}],
                   "non_preferred_output": [
                       {"role": "assistant", "content": answers[(index + 1) % len(answers)]}]}
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return out


# child: train one variant ------------------------------------------------------------------
def run_worker(spec: dict[str, Any]) -> int:
    import torch

    rows = [json.loads(line) for line in Path(spec["pairs"]).read_text("utf-8").splitlines()]
    train = train_trl if spec["engine"] == "trl" else train_tunelab
    result = train(spec, rows)
    result["threads"] = torch.get_num_threads()
    Path(spec["out"]).write_text(json.dumps(result), encoding="utf-8")
    return 0


def train_trl(spec: dict[str, Any], rows: list[dict]) -> dict[str, Any]:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    began = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(spec["model_dir"])
    model = AutoModelForCausalLM.from_pretrained(spec["model_dir"], dtype="float32")
    dataset = Dataset.from_list([
        {"prompt": row["input"]["messages"], "chosen": row["preferred_output"],
         "rejected": row["non_preferred_output"]} for row in rows])
    with tempfile.TemporaryDirectory() as scratch:
        config = DPOConfig(
            output_dir=scratch, per_device_train_batch_size=spec["batch_size"],
            max_length=spec["max_length"], max_steps=spec["steps"], learning_rate=spec["lr"],
            beta=spec["beta"], lr_scheduler_type="linear", warmup_steps=0, logging_steps=1,
            report_to="none", bf16=False, use_cpu=True, save_strategy="no",
            seed=spec["seed"], disable_tqdm=True, precompute_ref_log_probs=True,
            gradient_checkpointing=spec.get("gradient_checkpointing", True))
        setup_s = time.perf_counter() - began
        began = time.perf_counter()  # the reference pass runs in the constructor
        trainer = DPOTrainer(model=model, args=config, train_dataset=dataset,
                             processing_class=tokenizer, peft_config=lora_config(spec))
        ref_s = time.perf_counter() - began
        counter = TokenCounter(trainer.data_collator)
        trainer.data_collator = counter
        began = time.perf_counter()
        trainer.train()
        train_s = time.perf_counter() - began
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    return summary(counter.tokens, train_s, setup_s, ref_s,
                   [entry["loss"] for entry in logged],
                   [entry.get("rewards/accuracies") for entry in logged])


def train_tunelab(spec: dict[str, Any], rows: list[dict]) -> dict[str, Any]:
    from tunelab.config import TrainConfig
    from tunelab.local import prepare, trainer
    from tunelab.local.model_source import load_tokenizer
    from tunelab.local.state import TrainState

    began = time.perf_counter()
    config = TrainConfig(
        train_file=spec["pairs"], model=spec["model_dir"], method="dpo", beta=spec["beta"],
        batch_size=spec["batch_size"], max_length=spec["max_length"], lora_r=spec["lora_r"],
        lora_alpha=32, lora_dropout=0.0, learning_rate=spec["lr"], lr_scheduler="linear",
        warmup_ratio=0.0, max_steps=spec["steps"], save_every=None, max_samples=0,
        seed=spec["seed"])
    tokenizer = load_tokenizer(config.model)
    data = prepare.tokenize(config, tokenizer, prepare.Examples(rows, None))
    setup_s = time.perf_counter() - began
    began = time.perf_counter()
    session = trainer.setup(config, tokenizer, data.train, None,
                            base_ref=prepare.base_model_ref(config.model))
    ref_s = time.perf_counter() - began  # the reference log-probs: computed, or the cache read
    hooks = LossHooks()
    state = TrainState()
    with tempfile.TemporaryDirectory() as run_dir:
        began = time.perf_counter()
        trainer.train(session, state, hooks, Path(run_dir))
        train_s = time.perf_counter() - began
    return summary(state.trained_tokens, train_s, setup_s, ref_s, hooks.losses,
                   hooks.accuracies)


def summary(tokens: int, train_s: float, setup_s: float, ref_s: float, losses: list[float],
            accuracies: list[float | None]) -> dict[str, Any]:
    return {"tokens": tokens, "train_s": round(train_s, 1), "setup_s": round(setup_s, 1),
            "ref_s": round(ref_s, 1), "tokens_per_s": round(tokens / train_s, 1),
            "steps": len(losses), "losses": [round(loss, 4) for loss in losses],
            "final_loss": round(losses[-1], 4) if losses else None,
            "accuracies": accuracies}


# report --------------------------------------------------------------------------------------
def describe(result: dict[str, Any]) -> str:
    if result["exit_code"]:
        return f"  {result['name']}: failed with exit code {result['exit_code']}"
    return (f"  {result['name']}: {result['tokens_per_s']} tok/s, train {result['train_s']} s, "
            f"reference {result['ref_s']} s, losses {result['losses']}, "
            f"peak RSS {result['peak_rss_mb']} MB")


def print_table(results: list[dict[str, Any]], pairs: Path) -> None:
    ok = [result for result in results if not result["exit_code"]]
    reference = next((result for result in ok if result["name"] == "trl"), None)
    print(f"pairs: {pairs}  cpu cores: {os.cpu_count()}  load now: {load_average()}")
    print(f"{'run':18} {'tok/s':>8} {'x trl':>6} {'train s':>8} {'ref s':>6} {'steps':>5} "
          f"{'loss@1':>7} {'final loss':>10} {'max |dloss|':>11} {'peak MB':>8} {'vs trl':>7}")
    for result in ok:
        speed = peak = drift = "-"
        if reference:
            speed = f"{result['tokens_per_s'] / reference['tokens_per_s']:.2f}"
            peak = f"{result['peak_rss_mb'] / reference['peak_rss_mb']:.2f}"
            pairs_of = zip(result["losses"], reference["losses"], strict=False)
            drift = f"{max((abs(a - b) for a, b in pairs_of), default=0.0):.4f}"
        first = result["losses"][0] if result["losses"] else None
        print(f"{result['name']:18} {result['tokens_per_s']:>8} {speed:>6} "
              f"{result['train_s']:>8} {result['ref_s']:>6} {result['steps']:>5} "
              f"{first!s:>7} {result['final_loss']!s:>10} {drift:>11} "
              f"{result['peak_rss_mb']:>8} {peak:>7}")


if __name__ == "__main__":
    sys.exit(main())
