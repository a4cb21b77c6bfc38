"""`tunelab train --dry-run`: what a run would do and cost, measured, with nothing kept.

It resolves the config, checks and tokenizes the data with the model's own tokenizer and
chat template, plans the steps, then times a few real optimizer steps (forward, backward,
AdamW) on batches of this data to estimate wall time and peak memory. No job is
registered and no run folder is written.
"""

from __future__ import annotations

import math
import resource
import sys
import time
from typing import Any

from tunelab.config import TrainConfig
from tunelab.local import prepare, trainer
from tunelab.local.encoding import EncodedSet
from tunelab.local.state import TrainState

PROBE_STEPS = 3  # timed optimizer steps, after one untimed warm-up step


def dry_run(config: TrainConfig, *, probe: bool = True) -> dict[str, Any]:
    from tunelab.local.model_source import load_tokenizer

    prepare.check_config(config)
    examples = prepare.read_examples(config)
    tokenizer = load_tokenizer(config.model)
    data = prepare.tokenize(config, tokenizer, examples)
    report: dict[str, Any] = {"config": config.model_dump(mode="json"),
                              "data": {"train": data_report(data.train)}}
    if data.validation is not None:
        report["data"]["validation"] = data_report(data.validation)
    warnings = data_check_warnings(config, tokenizer)
    if warnings:
        report["data"]["warnings"] = warnings
    per_epoch = trainer.steps_per_epoch(len(data.train.items), config)
    total = config.max_steps or per_epoch * config.epochs
    report["plan"] = {"steps_per_epoch": per_epoch, "total_steps": total,
                      "epochs": round(total / per_epoch, 2),
                      "examples_per_step": config.batch_size * config.grad_accum}
    if probe:
        report["estimate"] = measure(config, tokenizer, data, total)
    return report


def data_report(encoded: EncodedSet) -> dict[str, Any]:
    from tunelab.data.check import distribution

    return {"examples": encoded.source_count, "trained_on": len(encoded.items),
            "dropped_no_loss_tokens": encoded.dropped[:20], "truncated": encoded.truncated,
            "tokens": distribution(encoded.full_lengths), "tokens_after_truncation":
            encoded.tokens, "loss_tokens": encoded.loss_tokens}


def data_check_warnings(config: TrainConfig, tokenizer: Any) -> dict[str, int]:
    """The data doctor's warning counts for this file (duplicates, no system prompt, ...)."""
    from tunelab.data.check import check_file

    try:
        report = check_file(config.train_file, provider="local", model=config.model,
                            tokenizer=tokenizer)
    except Exception:  # the doctor is advisory here; the trainer's own checks already ran
        return {}
    return dict(report.warnings.counts)


def measure(config: TrainConfig, tokenizer: Any, data: prepare.Tokenized,
            total_steps: int) -> dict[str, Any]:
    """Time real optimizer steps on this data and extrapolate to the whole run."""
    session = trainer.setup(config, tokenizer, data.train, data.validation,
                            base_ref=prepare.base_model_ref(config.model))
    loader = iter(trainer.epoch_loader(session, TrainState()))
    steps = min(PROBE_STEPS + 1, total_steps)
    timed_seconds, timed_tokens = 0.0, 0
    for step in range(steps):
        began, tokens = time.perf_counter(), 0
        for batch in _one_step(loader, session):
            trainer.train_step(session, batch)
            tokens += int(batch["attention_mask"].sum())
        if step > 0 or steps == 1:  # the first step pays one-off costs: not counted
            timed_seconds += time.perf_counter() - began
            timed_tokens += tokens
    tokens_per_s = timed_tokens / timed_seconds if timed_seconds else 0.0
    per_epoch = trainer.steps_per_epoch(len(data.train.items), config)
    train_tokens = data.train.tokens * total_steps / per_epoch
    seconds = train_tokens / tokens_per_s if tokens_per_s else math.inf
    evals = _eval_count(config, total_steps, per_epoch)
    if data.validation is not None and tokens_per_s:
        # A forward pass costs about a third of forward + backward.
        seconds += evals * data.validation.tokens / (3 * tokens_per_s)
    return {"tokens_per_s": round(tokens_per_s, 1), "wall_s": round(seconds, 1),
            "peak_memory_mb": round(peak_memory_bytes() / 2**20, 1),
            "method": f"timed {max(1, steps - 1)} optimizer step(s) of this data after "
                      f"{1 if steps > 1 else 0} warm-up step, on {session.accelerator.device} "
                      f"({trainer.effective_precision(config)}); "
                      "wall = run tokens / measured tokens/s"
                      + (f" + {evals} validation pass(es)" if data.validation else "")
                      + "; peak memory = this process's peak RSS (CUDA: max allocated)"}


def _one_step(loader: Any, session: trainer.Session) -> list[dict[str, Any]]:
    """The micro-batches of one optimizer step (fewer at the end of the data)."""
    batches = []
    for batch in loader:
        batches.append(batch)
        if len(batches) == session.config.grad_accum:
            break
    return batches


def _eval_count(config: TrainConfig, total_steps: int, per_epoch: int) -> int:
    """Validation passes in the run: one per epoch end, plus one every eval_every steps."""
    if not config.validation_file:
        return 0
    epochs = math.ceil(total_steps / max(1, per_epoch))
    return epochs + (total_steps // config.eval_every if config.eval_every else 0)


def peak_memory_bytes() -> int:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB
