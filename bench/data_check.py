"""Benchmark: `tunelab data check`'s core vs a cookbook-style validator on 100k examples.

Run: .venv/bin/python bench/data_check.py [--examples 100000] [--repeat 5] [--workers N] [--keep]

The data imitates the seeds' dataset: one persona system prompt shared by every example
(as in the 321-pair Natasha set), a user question and a reply of varied length, some
multi-turn, in English and Russian, with 1% broken lines. The cookbook-style validator is
the OpenAI cookbook's "Chat_finetuning_data_prep" algorithm restated here: json.loads per
line, its format checks per message, and `encoding.encode` per string value. Both runs
count the same things; the script prints both times, the ratio, and whether the counts match.
Each side runs in a fresh interpreter, as `tunelab data check` does, and each loads its
tokenizer tables first: that load is timed apart and shown, and the ratio is also given
with it included.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tunelab.data.check import check_file  # noqa: E402
from tunelab.data.tokens import counter_for, encoding_for, load_encoding  # noqa: E402

MODEL = "gpt-4o-mini-2024-07-18"
LIMIT = 65536
_TEXT = ("soul light river mirror fear love money path fire silence mother business "
         "душа свет река зеркало страх любовь деньги путь огонь тишина мама дело "
         "growth partner trust karma dream body breath ocean seed root wing door "
         "рост партнёр доверие карма сон тело дыхание океан семя корень крыло дверь")
WORDS = tuple(_TEXT.split())
SYSTEM = ("You are Natasha, a warm, provocative coach who answers in vivid metaphors about "
          "spiritual growth, relationships, business and past lives. " * 6).strip()


def sentence(rng: random.Random, low: int, high: int) -> str:
    words = rng.choices(WORDS, k=rng.randint(low, high))
    return " ".join(words).capitalize() + rng.choice((".", "?", "!", "..."))


def example(rng: random.Random) -> dict:
    messages = [{"role": "system", "content": SYSTEM}]
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        messages.append({"role": "user", "content": sentence(rng, 5, 25)})
        reply = " ".join(sentence(rng, 6, 18) for _ in range(rng.randint(2, 6)))
        messages.append({"role": "assistant", "content": reply})
    return {"messages": messages}


def generate(path: Path, count: int) -> None:
    rng = random.Random(0)
    with path.open("w", encoding="utf-8") as out:
        for index in range(count):
            if index % 100 == 99:  # 1% broken: no assistant turn, or a bad role
                line = {"messages": [{"role": rng.choice(("user", "narrator")),
                                      "content": sentence(rng, 3, 9)}]}
            else:
                line = example(rng)
            out.write(json.dumps(line, ensure_ascii=False) + "\n")


def cookbook(path: Path) -> dict:
    """The cookbook's algorithm, as its notebook documents it."""
    encoding = load_encoding(encoding_for(MODEL))
    with path.open(encoding="utf-8") as handle:
        dataset = [json.loads(line) for line in handle]
    bad = 0
    total = assistant = billing = 0
    for ex in dataset:
        if _format_errors(ex):
            bad += 1
            continue
        tokens = 3
        for message in ex["messages"]:
            tokens += 3
            for key, value in message.items():
                tokens += len(encoding.encode(value))
                if key == "name":
                    tokens += 1
        reply = sum(len(encoding.encode(m["content"])) for m in ex["messages"]
                    if m["role"] == "assistant")
        total += tokens
        assistant += reply
        billing += min(LIMIT, tokens)
    valid = len(dataset) - bad
    return {"examples": len(dataset), "bad": bad, "tokens": total, "assistant": assistant,
            "billing": billing, "epochs": _cookbook_epochs(valid)}


def _format_errors(ex: object) -> int:
    if not isinstance(ex, dict):
        return 1
    messages = ex.get("messages")
    if not messages:
        return 1
    errors = 0
    for message in messages:
        if "role" not in message or "content" not in message:
            errors += 1
        if any(k not in ("role", "content", "name", "function_call", "weight") for k in message):
            errors += 1
        if message.get("role") not in ("system", "user", "assistant", "function"):
            errors += 1
        content = message.get("content")
        if (not content and not message.get("function_call")) or not isinstance(content, str):
            errors += 1
    if not any(message.get("role") == "assistant" for message in messages):
        errors += 1
    return errors


def _cookbook_epochs(n: int) -> int:
    epochs = 3
    if n * 3 < 100:
        epochs = min(25, 100 // n)
    elif n * 3 > 25000:
        epochs = max(1, 25000 // n)
    return epochs


def ours(path: Path, workers: int | None = None) -> dict:
    report = check_file(path, provider="openai", model=MODEL, workers=workers)
    bad_lines = {problem.line for problem in report.errors.listed}
    return {"examples": report.examples, "bad": len(bad_lines) if report.errors.total <= 200
            else report.examples - report.valid_examples,
            "tokens": report.tokens["total"], "assistant": report.tokens["assistant"],
            "billing": report.billing_tokens, "epochs": report.epochs}


def timed(function, path: Path) -> tuple[dict, float, float]:
    """The result, wall seconds and CPU seconds (this process and its children)."""
    wall, cpu = time.perf_counter(), _cpu()
    result = function(path)
    return result, time.perf_counter() - wall, _cpu() - cpu


def _seconds(function) -> float:
    began = time.perf_counter()
    function()
    return time.perf_counter() - began


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def _cpu() -> float:
    import resource

    own, children = (resource.getrusage(who) for who in (resource.RUSAGE_SELF,
                                                          resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100_000)
    parser.add_argument("--keep", action="store_true", help="keep the generated file")
    parser.add_argument("--repeat", type=int, default=5, help="rounds; medians are reported")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes for tunelab (default: the usable cores)")
    parser.add_argument("--side", choices=("cookbook", "tunelab"), help=argparse.SUPPRESS)
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        return run_side(args.side, args.path, args.workers)
    folder = Path(tempfile.mkdtemp(prefix="tunelab-bench-"))
    path = folder / "bench.jsonl"
    generate(path, args.examples)
    size = path.stat().st_size / 1e6
    print(f"{args.examples:,} examples, {size:.0f} MB at {path}")
    rounds = []
    for round_number in range(1, args.repeat + 1):  # alternating, so drift hits both alike
        theirs, mine = side("cookbook", path, args), side("tunelab", path, args)
        rounds.append((theirs, mine))
        print(f"round {round_number} (load {_load()})")
        for name, run in (("cookbook-style", theirs), ("tunelab", mine)):
            print(f"  {name + ':':15} {run['wall']:6.2f} s wall {run['cpu']:6.2f} s cpu  "
                  f"(+{run['tables']:.2f} s loading tables)  {run['counts']}")
        print(f"  ratio: {theirs['wall'] / mine['wall']:.1f}x faster (wall), "
              f"{theirs['cpu'] / mine['cpu']:.1f}x (cpu); "
              f"counts match: {theirs['counts'] == mine['counts']}")
        if theirs["counts"] != mine["counts"]:
            return 1
    medians = {key: [statistics.median(run[key] for run in runs)
                     for runs in zip(*rounds, strict=True)]
               for key in ("wall", "tables")}
    (cookbook_s, ours_s), (cookbook_tables, ours_tables) = medians["wall"], medians["tables"]
    paired = statistics.median(theirs["wall"] / mine["wall"] for theirs, mine in rounds)
    print(f"median of {args.repeat}: cookbook-style {cookbook_s:.2f} s, tunelab {ours_s:.2f} s "
          f"-> {cookbook_s / ours_s:.1f}x faster (wall); median of the rounds' own ratios "
          f"{paired:.1f}x")
    print(f"with table loading: {cookbook_s + cookbook_tables:.2f} s vs "
          f"{ours_s + ours_tables:.2f} s -> "
          f"{(cookbook_s + cookbook_tables) / (ours_s + ours_tables):.1f}x")
    if not args.keep:
        path.unlink()
        folder.rmdir()
    return 0


def side(name: str, path: Path, args: argparse.Namespace) -> dict:
    """One side in a fresh interpreter, as a user would run it: nothing left from the other."""
    command = [sys.executable, __file__, "--side", name, "--path", str(path)]
    if args.workers is not None:
        command += ["--workers", str(args.workers)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def run_side(name: str, path: Path, workers: int | None) -> int:
    """Load the side's tokenizer tables (timed apart), then time the check itself."""
    if name == "cookbook":
        tables = _seconds(lambda: load_encoding(encoding_for(MODEL)))
        counts, wall, cpu = timed(cookbook, path)
    else:
        tables = _seconds(lambda: counter_for("openai", MODEL))
        counts, wall, cpu = timed(lambda file: ours(file, workers), path)
    print(json.dumps({"counts": counts, "wall": wall, "cpu": cpu, "tables": tables}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
