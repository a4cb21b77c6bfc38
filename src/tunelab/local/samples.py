"""After training: the new model answers the test prompts, saved to samples.json.

It answers as `tunelab test` does, with local/generation.py's defaults (greedy, the
repetition penalty), at their length unless the training config sets sample_max_new_tokens,
all prompts in batches (local/inference.py's complete_many)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tunelab.config import TrainConfig
from tunelab.local.generation import DEFAULT
from tunelab.local.prepare import common_system_prompt

DEFAULT_PROMPTS = Path("examples/natasha_prompts.txt")


def read_prompts(path: Path, limit: int) -> list[str]:
    """One prompt per line; blank lines and lines starting with # are skipped."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")][:limit]


def write_samples(config: TrainConfig, run_dir: Path, train_examples: list[dict],
                  recorder: Any) -> Path | None:
    path = Path(config.prompts) if config.prompts else DEFAULT_PROMPTS
    if config.max_samples == 0 or not path.is_file():
        return None
    try:
        from tunelab.local.inference import load_chat_model
    except ImportError:
        recorder.message("samples skipped: tunelab.local.inference is not available",
                         level="warning")
        return None
    prompts = read_prompts(path, config.max_samples)
    if not prompts:
        return None
    recorder.message(f"answering {len(prompts)} prompts from {path}")
    chat = load_chat_model(str(run_dir))  # the resolver finds adapter/ or, after --full, model/
    system = common_system_prompt(train_examples)
    opening = [{"role": "system", "content": system}] if system else []
    completions = chat.complete_many(  # in batches; greedy, so as each alone (inference.py)
        [[*opening, {"role": "user", "content": prompt}] for prompt in prompts],
        max_new_tokens=config.sample_max_new_tokens or DEFAULT.max_new_tokens)
    answers = [{"prompt": prompt, "answer": completion.text}
               for prompt, completion in zip(prompts, completions, strict=True)]
    target = run_dir / "samples.json"
    target.write_text(json.dumps({"prompts_file": str(path), "system": system,
                                  "samples": answers}, indent=2, ensure_ascii=False) + "\n",
                      encoding="utf-8")
    return target
