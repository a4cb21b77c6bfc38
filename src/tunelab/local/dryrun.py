"""`tunelab train --dry-run`: what a run would do and cost, measured, with nothing kept.

It resolves the config, checks and tokenizes the data with the model's own tokenizer and
chat template, plans the steps, estimates memory and time from the model's config
(local/estimate.py), then, where the weights are here, times a few real optimizer steps
(forward, backward, AdamW) on batches of this data to measure wall time and peak memory. A
hub id not yet downloaded is estimated from its config and tokenizer alone (a few MB): no
weights are fetched. No job is registered and no run folder is written.

`preflight` is the same model check before a real run: architecture, chat template and
memory are refused here, before any weights are downloaded or loaded.
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
    from tunelab.local import catalog
    from tunelab.local.model_source import load_tokenizer
    from tunelab.local.start import resolve_start

    prepare.check_config(config)
    config = resolve_start(config)  # --from JOB: its base is the model the run would load
    examples = prepare.read_examples(config)
    model, model_config = catalog.describe(config.model)
    catalog.check_trainable(model)
    tokenizer = load_tokenizer(config.model)
    data = prepare.tokenize(config, tokenizer, examples)
    report: dict[str, Any] = {"config": config.model_dump(mode="json"),
                              "model": model.as_dict(),
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
    per_run_tokens = data.train.tokens * total / per_epoch
    report["estimate_from_config"] = config_estimate(model, model_config, config,
                                                     data.train.tokens, per_run_tokens)
    if probe and catalog.weights_here(config.model):
        report["estimate"] = measure(config, tokenizer, data, total)
    return report


def config_estimate(model: Any, model_config: dict[str, Any], config: TrainConfig,
                    epoch_tokens: int, run_tokens: float) -> dict[str, Any]:
    """Memory and time from the model's config alone, with what it means for this run."""
    from tunelab.local.estimate import estimate

    if not model.parameters:
        return {"error": "the config does not say the model's size: no estimate"}
    found = estimate(model_config, config, model.parameters)
    return {**found.as_dict(), "seconds_per_epoch": _rounded(found.seconds_for(epoch_tokens)),
            "wall_s": _rounded(found.seconds_for(int(run_tokens))),
            "short_by_bytes": max(0, found.total_bytes - found.machine_bytes)}


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def preflight(config: TrainConfig) -> Any:
    """Refuse, before any weights are downloaded or loaded, a model this run cannot train:
    an architecture transformers cannot load as a causal LM, no chat template, or more
    memory than this machine has for the chosen method. Returns the model's facts."""
    from tunelab.local import catalog
    from tunelab.local.estimate import check_fits, estimate

    model, model_config = catalog.describe(config.model)
    catalog.check_trainable(model)
    if model.parameters:
        check_fits(model.name, estimate(model_config, config, model.parameters, timed=False),
                   config)
    return model


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
