"""Which trials a sweep runs, in order: the whole grid, or N trials Optuna's TPE samples.

Both hand out (index, parameters) and hear each trial's result. On a resume the finished
trials are already in the registry: a grid simply skips them; TPE replays them into a new
study first, so its next suggestions learn from them exactly as if nothing had stopped.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from tunelab.errors import UsageError
from tunelab.registry import JobRecord
from tunelab.sweep.space import Choices, Range, Space, grid


class GridSchedule:
    def __init__(self, space: Space) -> None:
        self.points = grid(space)

    def __iter__(self) -> Iterator[tuple[int, dict[str, Any]]]:
        yield from enumerate(self.points)

    def __len__(self) -> int:
        return len(self.points)

    def tell(self, index: int, params: dict[str, Any], loss: float | None, state: str) -> None:
        """A grid does not learn."""


class TpeSchedule:
    """`total` trials from Optuna's TPE sampler (seeded, so a sweep can be repeated)."""

    def __init__(self, space: Space, total: int, seed: int,
                 finished: dict[int, tuple[dict[str, Any], float | None, str]],
                 started: dict[int, JobRecord]) -> None:
        optuna = _optuna()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.optuna, self.total, self.started = optuna, total, started
        self.distributions = {key: _distribution(optuna, param) for key, param in space.items()}
        self.study = optuna.create_study(direction="minimize",
                                         sampler=optuna.samplers.TPESampler(seed=seed))
        self.asked: dict[int, Any] = {}
        for index in sorted(finished):
            self._add(*finished[index])

    def __iter__(self) -> Iterator[tuple[int, dict[str, Any]]]:
        for index in range(self.total):
            job = self.started.get(index)
            if job is not None:  # finished (replayed already) or interrupted (resumes)
                yield index, dict(job.hyperparameters or {})
                continue
            trial = self.study.ask(self.distributions)
            self.asked[index] = trial
            yield index, dict(trial.params)

    def __len__(self) -> int:
        return self.total

    def tell(self, index: int, params: dict[str, Any], loss: float | None, state: str) -> None:
        trial = self.asked.pop(index, None)
        if trial is None:  # asked before a kill, resumed now: add it whole
            self._add(params, loss, state)
            return
        frozen_state = _state(self.optuna, state, loss)
        value = loss if frozen_state == self.optuna.trial.TrialState.COMPLETE else None
        self.study.tell(trial, value, state=frozen_state)

    def _add(self, params: dict[str, Any], loss: float | None, state: str) -> None:
        frozen_state = _state(self.optuna, state, loss)
        complete = frozen_state == self.optuna.trial.TrialState.COMPLETE
        # parameters outside the space (cannot happen for the sweep's own trials): skipped
        with contextlib.suppress(ValueError):
            self.study.add_trial(self.optuna.trial.create_trial(
                params=params, distributions=self.distributions,
                value=loss if complete else None, state=frozen_state))


def _state(optuna: Any, state: str, loss: float | None) -> Any:
    states = optuna.trial.TrialState
    if state == "succeeded" and loss is not None:
        return states.COMPLETE
    return states.PRUNED if state == "pruned" else states.FAIL


def _distribution(optuna: Any, param: Choices | Range) -> Any:
    distributions = optuna.distributions
    if isinstance(param, Choices):
        return distributions.CategoricalDistribution(list(param.values))
    if param.integer:
        return distributions.IntDistribution(int(param.low), int(param.high), log=param.log)
    return distributions.FloatDistribution(param.low, param.high, log=param.log)


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise UsageError("--trials samples with Optuna's TPE, which is not installed",
                         fix="pip install 'tunelab[sweep]' (or pip install optuna), or list "
                             "the values to run the whole grid") from None
    return optuna
