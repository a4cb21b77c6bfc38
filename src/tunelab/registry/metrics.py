"""The one metric vocabulary: OpenAI's names, for local and cloud jobs alike, stored once.

Per step (the registry's metrics rows, a run's metrics.jsonl, metric events, checkpoints):

    step, epoch, train_loss, valid_loss, full_valid_loss,
    train_mean_token_accuracy, valid_mean_token_accuracy, trained_tokens

`valid_loss` is a validation loss at that step; `full_valid_loss` is the loss over the whole
validation file (the local trainer always evaluates the whole file, so it writes both).
A local run also measures `learning_rate` and `tokens_per_s`, which OpenAI does not report.

A preference (DPO) run has no token accuracy; its loss is DPO's, and beside it, on train
and validation pairs (the `train_`/`valid_` prefix as above):

    {train,valid}_reward_accuracy      share of pairs whose implicit reward
                                       beta * (logp - reference logp) is higher for the
                                       preferred answer than for the other
    {train,valid}_reward_margin        mean of that reward difference
    {train,valid}_preferred_logp       mean summed log-probability of the preferred answer
    {train,valid}_non_preferred_logp   the same for the non-preferred answer

A job's summary (`JobRecord.metrics`) uses the same names for its final values, plus
`best_valid_loss`, `last_train_loss`, `steps` and `train_seconds`. There `train_loss` is the
mean over every step of the run (as Hugging Face reports it) and `last_train_loss` the last
step's; the accuracies and `valid_loss` are the last ones measured.
"""

from __future__ import annotations

import math
from typing import Any

STEP = "step"
MAX_STEP = 10**9  # a step beyond this is no step of a fine-tune (registry refuses it)
EPOCH = "epoch"
TRAIN_LOSS = "train_loss"
VALID_LOSS = "valid_loss"
FULL_VALID_LOSS = "full_valid_loss"
TRAIN_ACCURACY = "train_mean_token_accuracy"
VALID_ACCURACY = "valid_mean_token_accuracy"
TRAINED_TOKENS = "trained_tokens"
LEARNING_RATE = "learning_rate"
TOKENS_PER_S = "tokens_per_s"
# Preference (DPO) runs, see the module docstring.
TRAIN_REWARD_ACCURACY = "train_reward_accuracy"
VALID_REWARD_ACCURACY = "valid_reward_accuracy"
TRAIN_REWARD_MARGIN = "train_reward_margin"
VALID_REWARD_MARGIN = "valid_reward_margin"
TRAIN_PREFERRED_LOGP = "train_preferred_logp"
VALID_PREFERRED_LOGP = "valid_preferred_logp"
TRAIN_NON_PREFERRED_LOGP = "train_non_preferred_logp"
VALID_NON_PREFERRED_LOGP = "valid_non_preferred_logp"
PREFERENCE_TRAIN_METRICS = (TRAIN_REWARD_ACCURACY, TRAIN_REWARD_MARGIN, TRAIN_PREFERRED_LOGP,
                            TRAIN_NON_PREFERRED_LOGP)
PREFERENCE_VALID_METRICS = (VALID_REWARD_ACCURACY, VALID_REWARD_MARGIN, VALID_PREFERRED_LOGP,
                            VALID_NON_PREFERRED_LOGP)

OPENAI_STEP_METRICS = (STEP, EPOCH, TRAIN_LOSS, VALID_LOSS, FULL_VALID_LOSS, TRAIN_ACCURACY,
                       VALID_ACCURACY, TRAINED_TOKENS)
STEP_METRICS = (*OPENAI_STEP_METRICS, LEARNING_RATE, TOKENS_PER_S, *PREFERENCE_TRAIN_METRICS,
                *PREFERENCE_VALID_METRICS)
# A run's headline accuracy, whichever method measured it: supervised runs the share of
# tokens predicted, preference runs the share of pairs ranked right. Views show the first
# one a row has (the progress bar's "acc", jobs show/compare, the dashboard's second chart).
TRAIN_ACCURACIES = (TRAIN_ACCURACY, TRAIN_REWARD_ACCURACY)
VALID_ACCURACIES = (VALID_ACCURACY, VALID_REWARD_ACCURACY)
# The per-step values a chart or a comparison shows, besides the losses.
CURVE_METRICS = (*TRAIN_ACCURACIES, *VALID_ACCURACIES, TRAIN_REWARD_MARGIN,
                 VALID_REWARD_MARGIN)

# Summary-only names of a job's final metrics.
BEST_VALID_LOSS = "best_valid_loss"
LAST_TRAIN_LOSS = "last_train_loss"
STEPS = "steps"
TRAIN_SECONDS = "train_seconds"

# What rows written before the vocabulary was one called these (migration 2 renames them).
LEGACY_STEP_NAMES = {"loss": TRAIN_LOSS, "val_loss": VALID_LOSS, "lr": LEARNING_RATE,
                     "tokens": TRAINED_TOKENS}
LEGACY_SUMMARY_NAMES = {"last_loss": LAST_TRAIN_LOSS, "best_val_loss": BEST_VALID_LOSS,
                        "last_val_loss": VALID_LOSS, "tokens": TRAINED_TOKENS}


def step_metrics(data: dict[str, Any] | None) -> dict[str, Any]:
    """The vocabulary's values in `data` (a provider's metrics event, a trainer payload),
    dropping everything else and every missing value."""
    data = data or {}
    return {name: data[name] for name in STEP_METRICS if data.get(name) is not None}


def accuracy(values: dict[str, Any], names: tuple[str, ...] = TRAIN_ACCURACIES
             ) -> float | None:
    """The headline accuracy in `values` (TRAIN_ACCURACIES or VALID_ACCURACIES), whichever
    method measured it; None when it has none."""
    return next((float(values[name]) for name in names if values.get(name) is not None), None)


def validation_loss(values: dict[str, Any]) -> float | None:
    """The validation loss to show for a step or a job: over the whole file when known."""
    for name in (FULL_VALID_LOSS, VALID_LOSS):
        if values.get(name) is not None:
            return float(values[name])
    return None


def finite(value: Any) -> Any:
    """`value` with every NaN or infinity (at any depth) as None: what leaves the program as
    JSON (--json, the dashboard's streams) is strict JSON, even for a row written before the
    registry refused such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {name: finite(item) for name, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    return value
