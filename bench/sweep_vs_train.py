"""The seed's scenario, timed: two learning rates, compared, the better one kept.

By hand that is two `tunelab train` runs and a `tunelab jobs compare`; with a sweep it is
one `tunelab sweep --learning-rate A,B`. Both run here, one after the other, each as the CLI
a user types (a subprocess, in a fresh TUNELAB_HOME sharing the converted-model cache), and
the script prints each wall time and their ratio from this one run, with the winner each
path found (they must agree: same data, same seed, same settings).

Equal work by default: the train runs answer no sample prompts (max_samples 0), since a
sweep's trials answer none; --with-samples times `tunelab train` as it is out of the box.

    .venv/bin/python bench/sweep_vs_train.py --max-steps 8 --max-length 128
    .venv/bin/python bench/sweep_vs_train.py --learning-rates 2e-4,1e-3 --preset quick
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def tunelab(args: list[str], env: dict[str, str]) -> tuple[float, dict]:
    """Run `tunelab ARGS --json`; its wall time and the JSON object it printed."""
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "tunelab", *args, "--json"], env=env,
                          capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"tunelab {' '.join(args)} failed ({done.returncode}):\n"
                         f"{done.stderr[-3000:]}")
    return seconds, json.loads(done.stdout.strip().splitlines()[-1])


def by_hand(rates: list[str], common: list[str], env: dict[str, str]) -> dict:
    """Two `tunelab train` runs and `tunelab jobs compare`; the better job kept."""
    seconds, runs = 0.0, []
    for rate in rates:
        took, result = tunelab(["train", *common, "--learning-rate", rate], env)
        seconds += took
        runs.append(result)
    took, report = tunelab(["jobs", "compare", runs[0]["id"], runs[1]["id"]], env)
    seconds += took
    best = min(runs, key=lambda run: run["metrics"]["best_valid_loss"])
    return {"seconds": seconds, "winner_rate": rates[runs.index(best)],
            "best_valid_loss": best["metrics"]["best_valid_loss"],
            "compared": sorted(report["config_diff"])}


def with_sweep(rates: list[str], common: list[str], env: dict[str, str]) -> dict:
    seconds, summary = tunelab(["sweep", *common, "--learning-rate", ",".join(rates)], env)
    winner = summary["winner"]
    return {"seconds": seconds, "winner_rate": rates[winner["index"]],
            "best_valid_loss": winner["best_valid_loss"], "sweep": summary["sweep"]}


def warm_cache() -> Path:
    """The converted-model cache both paths share, filled before any clock starts."""
    from tunelab import home
    from tunelab.local.model_source import resolve_model_dir

    resolve_model_dir(None)  # converts the embedded GGUF once (about 20 s) if not done
    return home.cache_dir()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", default=str(REPO / "examples/natasha_train.jsonl"))
    parser.add_argument("--validation-file", default=str(REPO / "examples/natasha_val.jsonl"))
    parser.add_argument("--learning-rates", default="2e-4,1e-3")
    parser.add_argument("--with-samples", action="store_true",
                        help="let the train runs answer their sample prompts, as by default")
    args, training = parser.parse_known_args()  # the rest: training flags for both paths
    rates = args.learning_rates.split(",")
    if len(rates) != 2:
        parser.error("--learning-rates takes exactly two values")
    with tempfile.TemporaryDirectory(prefix="sweep-bench-") as folder:
        config = Path(folder) / "bench.json"
        config.write_text(json.dumps({} if args.with_samples else {"max_samples": 0}))
        common = [args.train, "--validation-file", args.validation_file, "--config",
                  str(config), *training]
        env = {**os.environ, "TUNELAB_HOME": str(Path(folder) / "home"), "HF_HUB_OFFLINE": "1",
               "TUNELAB_CACHE_DIR": str(warm_cache())}
        hand = by_hand(rates, common, env)
        sweep = with_sweep(rates, common, env)
    ratio = hand["seconds"] / sweep["seconds"]
    print(json.dumps({"by_hand": hand, "sweep": sweep, "ratio": round(ratio, 2),
                      "training_flags": training, "with_samples": args.with_samples},
                     indent=2))
    print(f"two train runs + jobs compare: {hand['seconds']:.1f} s; tunelab sweep: "
          f"{sweep['seconds']:.1f} s; ratio {ratio:.2f}x; winners: {hand['winner_rate']} "
          f"and {sweep['winner_rate']}")
    return 0 if hand["winner_rate"] == sweep["winner_rate"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
