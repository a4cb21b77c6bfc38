"""Which generation settings should `test`, `chat`, `compare` and the auto-test use?

    .venv/bin/python bench/generation_defaults.py                 # trains `make demo`'s job
    .venv/bin/python bench/generation_defaults.py --job RUN_DIR   # or reuse one (or a job id
                                                                  # in $TUNELAB_HOME)
    .venv/bin/python bench/generation_defaults.py --show          # + every answer

The held-out conversations (examples/natasha_val.jsonl, all 28, each up to its last user
turn with its own system prompt, as `compare` asks them; --prompts FILE.txt takes prompts
one a line under the demo's system prompt instead, as the after-training samples do) go to
the base model and to a model tuned as `make demo` tunes it (quick preset,
examples/natasha_train.jsonl + natasha_val.jsonl), under each setting below. Per setting
and model it prints the share of answers that loop, distinct-2, the share answered in
the prompt's language and the answers mixing scripts (tunelab.evaluate.fluency defines
them: the language check is the strict one of issue 23, 95% of the letters). Sampled settings are
run with --seeds seeds and pooled. The held-out loss (ChatModel.validation over
natasha_val.jsonl, the number `compare` reports) is printed once per model: generation
settings cannot move it, and the script checks that it is the same before and after.
See bench/README.md, "Generation defaults".
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from tunelab.data.reader import load_examples
from tunelab.evaluate import fluency
from tunelab.evaluate.prompts import load_prompts
from tunelab.local.generation import DEFAULT, Generation
from tunelab.local.inference import ChatModel, load_chat_model
from tunelab.local.prepare import common_system_prompt

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
GREEDY = replace(DEFAULT, temperature=0.0, repetition_penalty=1.0, penalize_prompt=True)
SAMPLED = replace(DEFAULT, temperature=0.7, top_p=0.9, penalize_prompt=True)
SETTINGS: dict[str, Generation] = {
    "greedy": GREEDY,
    "greedy, penalty 1.1": replace(GREEDY, repetition_penalty=1.1),
    "greedy, penalty 1.2": replace(GREEDY, repetition_penalty=1.2),
    "greedy, penalty 1.3": replace(GREEDY, repetition_penalty=1.3),
    "greedy, penalty 1.2 on the answer only": replace(GREEDY, repetition_penalty=1.2,
                                                      penalize_prompt=False),
    "greedy, penalty 1.3 on the answer only": replace(GREEDY, repetition_penalty=1.3,
                                                      penalize_prompt=False),
    "T=0.7 top_p=0.9, penalty 1.2": replace(SAMPLED, repetition_penalty=1.2),
}


def train_demo_job() -> str:
    """`make demo`'s training command, in $TUNELAB_HOME; the run folder."""
    command = [str(Path(sys.executable).parent / "tunelab"), "train",
               str(EXAMPLES / "natasha_train.jsonl"), "--validation-file",
               str(EXAMPLES / "natasha_val.jsonl"), "--preset", "quick", "--yes", "--json"]
    print("training:", " ".join(command), file=sys.stderr)
    started = time.perf_counter()
    done = subprocess.run(command, check=True, capture_output=True, text=True, cwd=REPO)
    result = json.loads(done.stdout)
    print(f"trained {result['id']} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return result["run_dir"]


def answers(model: ChatModel, conversations: list[list[dict[str, str]]],
            setting: Generation, seeds: int) -> list[str]:
    runs = seeds if setting.temperature > 0 else 1
    # batched (ChatModel.complete_many): greedy answers are the ones each prompt gets alone
    return [done.text for seed in range(runs) for done in model.complete_many(
        conversations, **replace(setting, seed=seed).to_dict())]


def measure(label: str, model: ChatModel, conversations: list[list[dict[str, str]]],
            seeds: int, show: bool) -> list[dict[str, Any]]:
    rows = []
    for name, setting in SETTINGS.items():
        started = time.perf_counter()
        texts = answers(model, conversations, setting, seeds)
        questions = [messages[-1]["content"] for messages in conversations] * (
            len(texts) // len(conversations))
        summary = fluency.summary(questions, texts)
        per_answer = [fluency.distinct_2([text]) for text in texts]
        rows.append({"model": label, "setting": name, "answers": len(texts), **summary,
                     "mean_answer_distinct_2": statistics.mean(
                         [d for d in per_answer if d is not None] or [0.0]),
                     "seconds": round(time.perf_counter() - started, 1),
                     "texts": texts})
        print(_row(rows[-1]), file=sys.stderr)
        if show:
            for question, text in zip(questions, texts, strict=True):
                print(f"  > {question}\n    {text}", file=sys.stderr)
    return rows


def _row(row: dict[str, Any]) -> str:
    return (f"| {row['model']} | {row['setting']} | {row['answers']} | "
            f"{row['loop_share']:.0%} | {row['distinct_2']:.2f} | "
            f"{row['mean_answer_distinct_2']:.2f} | {row['language_match']:.0%} | "
            f"{row['mixed_script_answers']} | {row['seconds']:.0f} |")


def answer_lengths(model: ChatModel, examples: list[dict[str, Any]]) -> dict[str, float]:
    """Tokens in the training data's assistant answers: how long max_new_tokens must be."""
    sizes = sorted(len(model.tokenizer(m["content"], add_special_tokens=False)["input_ids"])
                   for example in examples for m in example["messages"]
                   if m["role"] == "assistant")
    return {"median": statistics.median(sizes), "p95": sizes[int(0.95 * (len(sizes) - 1))],
            "max": sizes[-1]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", help="a tuned run folder or job id; default: train one")
    parser.add_argument("--prompts", type=Path, default=EXAMPLES / "natasha_val.jsonl",
                        help="a dialogue file (each conversation as compare asks it) or a "
                             ".txt of prompts (under the demo's system prompt)")
    parser.add_argument("--limit", type=int, default=None, help="default: every prompt")
    parser.add_argument("--max-new-tokens", type=int, default=DEFAULT.max_new_tokens)
    parser.add_argument("--seeds", type=int, default=3, help="runs of each sampled setting")
    parser.add_argument("--show", action="store_true", help="print every answer")
    parser.add_argument("--json", type=Path, help="write every row and answer here")
    parser.add_argument("--model", action="append", choices=("base", "tuned"), default=[],
                        help="measure only this model (repeat for both; default: both)")
    parser.add_argument("--only", action="append", default=[],
                        help="run only this setting (exact name; repeat for more)")
    args = parser.parse_args(argv)
    for name in [name for name in SETTINGS if args.only and name not in args.only]:
        del SETTINGS[name]
    for name, setting in SETTINGS.items():
        SETTINGS[name] = replace(setting, max_new_tokens=args.max_new_tokens)

    train = load_examples(EXAMPLES / "natasha_train.jsonl")
    valid = load_examples(EXAMPLES / "natasha_val.jsonl")
    system = common_system_prompt(train)
    conversations = load_prompts(args.prompts, fallback_system=system)[:args.limit]
    models = args.model or ["base", "tuned"]
    tuned_ref = (args.job or train_demo_job()) if "tuned" in models else None
    print(f"load average {os.getloadavg()[0]:.2f}; {len(conversations)} prompts, "
          f"max_new_tokens {args.max_new_tokens}, {args.seeds} seeds when sampling",
          file=sys.stderr)
    print("| model | setting | answers | loop | distinct-2 | distinct-2 per answer | "
          "same language | mixed script | s |\n|---|---|---|---|---|---|---|---|---|",
          file=sys.stderr)
    rows, losses = [], {}
    for label, ref in [(label, tuned_ref if label == "tuned" else None) for label in models]:
        model = load_chat_model(ref)
        before = model.validation(valid).loss
        rows += measure(label, model, conversations, args.seeds, args.show)
        after = model.validation(valid).loss
        assert after == before, "a generation setting changed the held-out loss"
        losses[label] = before
    base = load_chat_model(None)
    measured = ", ".join(f"{label} {loss:.4f}" for label, loss in losses.items())
    print(f"held-out loss on {len(valid)} natasha_val examples: {measured} (unchanged by "
          f"every setting); answer tokens in natasha_train: {answer_lengths(base, train)}",
          file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps({"job": tuned_ref, "held_out_loss": losses,
                                         "rows": rows}, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
