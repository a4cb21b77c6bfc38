"""Median pruning on validation loss: a trial clearly worse than the others stops early.

After each validation the trainer asks the judge (local/trainer.py) whether to go on. A
trial is stopped when
- its validation loss is not finite: it diverged;
- its validation loss is more than BASE_MARGIN above the untrained base model's: training
  is making the model worse than not training at all (a learning rate far too high);
- at least MIN_TRIALS trials have finished, and its best validation loss so far is above the
  median of their best validation losses by the same step: Optuna's MedianPruner rule.
  Optuna waits for 5 finished trials by default; a grid of 4 or 6 trials would then never
  prune, so this waits for 3, the fewest that make a median of more than two.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from tunelab.evaluate.plots import job_loss_series
from tunelab.local.state import TrainState
from tunelab.registry import metrics

MIN_TRIALS = 3
BASE_MARGIN = 0.10  # "clearly worse" than the base model: 10% above its validation loss

Curve = list[tuple[int, float]]  # (step, validation loss)


@dataclass
class MedianRule:
    base_loss: float | None
    finished: list[Curve] = field(default_factory=list)

    def __call__(self, state: TrainState) -> str | None:
        loss = state.valid_loss
        if loss is None:
            return None
        if not math.isfinite(loss):
            return f"validation loss is {loss}: the run diverged"
        if self.base_loss is not None and loss > self.base_loss * (1 + BASE_MARGIN):
            return (f"validation loss {loss:.4f} is more than {BASE_MARGIN:.0%} above the "
                    f"untrained base model's {self.base_loss:.4f}")
        best = state.best_valid_loss
        others = [value for value in (best_by(curve, state.step) for curve in self.finished)
                  if value is not None]
        if best is None or len(others) < MIN_TRIALS:
            return None
        median = statistics.median(others)
        if best > median:
            return (f"best validation loss {best:.4f} is above the median {median:.4f} of "
                    f"{len(others)} finished trials by step {state.step}")
        return None


def best_by(curve: Curve, step: int) -> float | None:
    """The lowest validation loss a curve had reached by `step`."""
    reached = [loss for at, loss in curve if at <= step and math.isfinite(loss)]
    return min(reached) if reached else None


def validation_curve(job_id: str) -> Curve:
    """A job's validation losses from the registry, by step."""
    points = job_loss_series(job_id).get(metrics.VALID_LOSS, [])
    return [(int(step), value) for step, value in points]
