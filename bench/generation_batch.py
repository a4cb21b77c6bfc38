"""Answers per second: batched generation against one prompt at a time, in one run.

    .venv/bin/python bench/generation_batch.py                    # embedded model, 128 tokens
    .venv/bin/python bench/generation_batch.py --max-new-tokens 64 --threads 2
    .venv/bin/python bench/generation_batch.py --model ftjob-...  # any name `tunelab test` takes

Two prompt sets, each answered both ways by the same loaded model with tunelab's generation
defaults (greedy, repetition penalty 1.2 over the prompt): examples/natasha_prompts.txt under
the demo's system prompt (as the after-training samples ask them), and the 28 held-out
conversations of examples/natasha_val.jsonl up to their last user turn (as `compare` asks
them). One at a time is `ChatModel.complete_prompt` per prompt (what every command did
before); batched is one `ChatModel.complete_prompts` call (what `test`, `compare` and the
samples do now). For each set it prints the answers/s and generated tokens/s of both, the
ratio, and whether every greedy answer is the same text with the same token counts (it
exits 1 if one is not). The order alternates between sets so the machine's drift hits both.
See bench/README.md, "generation_batch.py".
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


def prompt_sets(chat: Any, limit: int | None) -> dict[str, list[list[int]]]:
    from tunelab.data.reader import load_examples
    from tunelab.evaluate.runner import eval_items
    from tunelab.local.prepare import common_system_prompt
    from tunelab.local.samples import read_prompts

    system = common_system_prompt(load_examples(EXAMPLES / "natasha_train.jsonl"))
    lines = read_prompts(EXAMPLES / "natasha_prompts.txt", limit or 10**6)
    samples = [[{"role": "system", "content": system}, {"role": "user", "content": line}]
               for line in lines]
    held_out = [item.prompt for item in
                eval_items(load_examples(EXAMPLES / "natasha_val.jsonl"))][:limit]
    return {"natasha_prompts.txt": [chat.prompt(messages).ids for messages in samples],
            "natasha_val.jsonl": [chat.prompt(messages).ids for messages in held_out]}


def timed(work: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    done = work()
    return done, time.perf_counter() - started


def cpu_timed(work: Any) -> tuple[Any, float, float]:
    """`work`'s result, wall seconds and this process's CPU seconds: with one torch thread
    on a loaded machine, the CPU seconds are close to what an idle core would take."""
    cpu = time.process_time()
    done, wall = timed(work)
    return done, wall, time.process_time() - cpu


def measure(chat: Any, prompts: list[list[int]], tokens: int, batched_first: bool,
            batch_tokens: int) -> dict[str, Any]:
    def alone() -> list[Any]:
        return [chat.complete_prompt(ids, max_new_tokens=tokens) for ids in prompts]

    def batched() -> list[Any]:
        return chat.complete_prompts(prompts, max_new_tokens=tokens, batch_tokens=batch_tokens)

    runs = [("batched", batched), ("alone", alone)]
    found = {name: cpu_timed(work) for name, work in (runs if batched_first else runs[::-1])}
    (one, one_s, one_cpu), (many, many_s, many_cpu) = found["alone"], found["batched"]
    differ = [index for index, (a, b) in enumerate(zip(one, many, strict=True))
              if (a.text, a.completion_tokens) != (b.text, b.completion_tokens)]
    generated = sum(c.completion_tokens for c in one)
    return {"prompts": len(prompts), "lengths": f"{min(map(len, prompts))}-"
            f"{max(map(len, prompts))}", "tokens": generated,
            "alone_s": one_s, "batched_s": many_s, "differ": differ,
            "alone_cpu_s": one_cpu, "batched_cpu_s": many_cpu,
            "alone_answers_s": len(prompts) / one_s, "batched_answers_s": len(prompts) / many_s,
            "alone_tokens_s": generated / one_s,
            "batched_tokens_s": sum(c.completion_tokens for c in many) / many_s}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", help="any name `tunelab test` takes")
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help="default: local/generation.py's (128)")
    parser.add_argument("--limit", type=int, default=None, help="the first N of each set")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--batch-tokens", type=int, default=None,
                        help="default: local/generation.py's BATCH_TOKENS")
    args = parser.parse_args(argv)

    import torch

    from tunelab.local.generation import BATCH_TOKENS, DEFAULT
    from tunelab.local.inference import load_chat_model

    if args.threads:
        torch.set_num_threads(args.threads)
    tokens = args.max_new_tokens or DEFAULT.max_new_tokens
    chat, load_s = timed(lambda: load_chat_model(args.model))
    sets = prompt_sets(chat, args.limit)
    print(f"model {args.model} (loaded in {load_s:.1f} s), {tokens} new tokens at most, "
          f"{torch.get_num_threads()} torch threads, batch budget "
          f"{args.batch_tokens or BATCH_TOKENS} tokens; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
    chat.complete_prompt(sets["natasha_prompts.txt"][0], max_new_tokens=4)  # warm-up
    failed = False
    for number, (name, prompts) in enumerate(sets.items()):
        found = measure(chat, prompts, tokens, batched_first=number % 2 == 0,
                        batch_tokens=args.batch_tokens or BATCH_TOKENS)
        same = "all identical" if not found["differ"] else f"DIFFER: {found['differ']}"
        ratio = found["batched_answers_s"] / found["alone_answers_s"]
        print(f"{name}: {found['prompts']} prompts ({found['lengths']} tokens), "
              f"{found['tokens']} tokens generated\n"
              f"  one at a time {found['alone_s']:7.1f} s ({found['alone_cpu_s']:.1f} s CPU)  "
              f"{found['alone_answers_s']:.3f} answers/s  "
              f"{found['alone_tokens_s']:.1f} tokens/s\n"
              f"  batched       {found['batched_s']:7.1f} s ({found['batched_cpu_s']:.1f} s CPU)  "
              f"{found['batched_answers_s']:.3f} answers/s  "
              f"{found['batched_tokens_s']:.1f} tokens/s\n"
              f"  batched/one at a time: {ratio:.2f}x"
              f" answers/s; greedy answers {same}; load average {os.getloadavg()[0]:.1f}",
              flush=True)
        failed = failed or bool(found["differ"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
