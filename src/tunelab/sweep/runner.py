"""A sweep from start to end: open it (or find the one to resume), run its trials, finish.

`open_sweep` turns what the user asked (a SweepRequest the CLI builds) into a plan, checks
every trial's config before anything loads, asks `confirm` when it holds more than
ASK_ABOVE_TRIALS trials (a 100 x 100 grid is 10,000 trainings), and writes it; the same
request again finds the unfinished sweep it started and resumes it. `execute` runs the
plan's trials, locally or on a cloud provider, and ends with the winner, the curves and the
winner's config.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.config import resolve_config
from tunelab.errors import UsageError
from tunelab.runs import Target
from tunelab.sweep import plan as plans
from tunelab.sweep import results
from tunelab.sweep.board import Board
from tunelab.sweep.space import parse_flags, size

if TYPE_CHECKING:
    from tunelab.local.warm import WarmStart

# A sweep of more trials than this is said and confirmed before it starts, as a cloud start
# confirms its cost: a typo'd list, or two long ones, is a week of training.
ASK_ABOVE_TRIALS = 50


@dataclass(frozen=True)
class SweepRequest:
    """`tunelab sweep`, typed: the training flags given one value (`fixed`, TrainConfig
    keys) and those given as typed, possibly lists or ranges (`varied`)."""

    file: Path | None
    validation_file: Path | None
    fixed: dict[str, Any] = field(default_factory=dict)
    varied: dict[str, str | None] = field(default_factory=dict)
    preset: str | None = None
    config_file: Path | None = None
    trials: int | None = None
    budget_minutes: float | None = None
    keep_all: bool = False
    provider: str = "local"
    cloud: dict[str, Any] = field(default_factory=dict)  # base_url, project_id, ... no keys


def open_sweep(request: SweepRequest, *, confirm: Callable[[int], None] | None = None
               ) -> tuple[plans.SweepPlan, bool]:
    """The plan to run, and whether it is an unfinished one being resumed. A new plan of more
    than ASK_ABOVE_TRIALS trials is first handed to `confirm(trials)`, which raises to refuse
    it; without `confirm` such a plan is refused."""
    _check(request)
    values, space = parse_flags(request.varied)
    if not space:
        raise UsageError("nothing to sweep: no flag has more than one value",
                         fix="give a flag a list (--learning-rate 1e-4,5e-4) or a range with "
                             "--trials N (--learning-rate 1e-5..1e-3 --trials 8)")
    plan = plans.SweepPlan(id="", provider=request.provider,
                           base=_base(request, values, list(space)),
                           space={key: param.as_dict() for key, param in space.items()},
                           trials=request.trials, budget_minutes=request.budget_minutes,
                           keep_all=request.keep_all, cloud=dict(request.cloud))
    plan.fingerprint = plans.fingerprint(plan, [str(request.file),
                                                str(request.validation_file)])
    found = plans.unfinished(plan.fingerprint)
    if found is not None:
        return found, True
    if plan.provider == "local":
        from tunelab.sweep.local_trials import check_space

        check_space(plan)
    elif plan.trials is not None:
        raise UsageError("--trials: a cloud sweep creates its jobs together, and TPE needs "
                         "each result before its next pick",
                         fix="list the values to run the grid, or sweep locally")
    trials = size(space, plan.trials)
    if trials > ASK_ABOVE_TRIALS:
        if confirm is None:
            raise UsageError(f"this sweep would run {trials:,} trials, more than "
                             f"{ASK_ABOVE_TRIALS} unconfirmed",
                             fix="list fewer values, or sample some with --trials N")
        confirm(trials)
    return plans.create(plan), False


def _check(request: SweepRequest) -> None:
    if request.file is None:
        raise UsageError("FILE is missing", fix="tunelab sweep FILE --validation-file V ...")
    if request.validation_file is None:
        raise UsageError("a sweep ranks its trials by validation loss: --validation-file is "
                         "missing", fix="pass --validation-file V (tunelab data split makes one)")
    if request.trials is not None and request.trials < 1:
        raise UsageError(f"--trials {request.trials}: needs at least 1 trial",
                         fix="e.g. --trials 8")
    if request.budget_minutes is not None and not request.budget_minutes > 0:
        raise UsageError(f"--budget-minutes {request.budget_minutes:g} must be more than 0",
                         fix="e.g. --budget-minutes 60")


def _base(request: SweepRequest, values: dict[str, Any], varied: list[str]) -> dict[str, Any]:
    """What every trial starts from: the resolved config (local), or the shared values of a
    cloud job."""
    files = {"train_file": str(request.file), "validation_file": str(request.validation_file)}
    if request.provider != "local":
        from tunelab.data.pricing import default_model
        from tunelab.sweep.cloud_trials import check_keys

        check_keys([*varied, *values, *(key for key in request.fixed
                                        if key not in ("model", "suffix"))])
        model = request.fixed.get("model") or default_model(request.provider)
        return {**files, "model": model, "suffix": request.fixed.get("suffix"), **values}
    from tunelab.local.prepare import check_config

    config = resolve_config(preset=request.preset, config_file=request.config_file,
                            flags={**request.fixed, **values, **files})
    if config.output_dir:
        raise UsageError(f"output_dir {config.output_dir}: each trial of a sweep has its own "
                         "run folder", fix="drop output_dir from the config")
    check_config(config)
    return config.model_dump(mode="json")


def resume_sweep(sweep_id: str) -> plans.SweepPlan:
    plan = plans.load(sweep_id)
    if plans.read_progress(plan).get("finished"):
        raise UsageError(f"sweep {sweep_id} has finished; its summary is in "
                         f"{plan.folder / 'summary.json'}",
                         fix="start a new sweep with `tunelab sweep FILE ...`")
    return plan


def execute(plan: plans.SweepPlan, board: Board, stop: threading.Event, *,
            target: Target | None = None,
            confirm: Callable[[Any], None] | None = None, wait: bool = True,
            interval: float = 60.0, warm: WarmStart | None = None) -> dict[str, Any]:
    """Run the plan's remaining trials and finish: the --json summary.

    Local: `warm` is a base model and dataset already loaded for the plan's config (else
    loaded here). Cloud: `target` is where the trials go (the door checks it, the gate
    first), `confirm` sees the quote and raises to refuse it."""
    plans.claim(plan)
    try:
        if plan.provider == "local":
            from tunelab.sweep import local_trials

            ended = local_trials.run(plan, board, stop, warm=warm)
        else:
            from tunelab.sweep import cloud_trials

            if target is None or confirm is None:
                raise UsageError(f"sweep {plan.id} runs on {plan.provider}",
                                 fix=f"pass --provider {plan.provider}")
            ended = cloud_trials.run(plan, board, target, confirm=confirm, wait=wait,
                                     interval=interval, stop=stop)
        return finish(plan, board, ended)
    finally:
        plans.release(plan)


def finish(plan: plans.SweepPlan, board: Board, ended: str) -> dict[str, Any]:
    best = results.winner(board)
    files = {"curves": results.write_curves(plan, board),
             "winner_config": results.write_winner_config(plan, best) if best else None}
    if ended in ("finished", "budget"):
        results.let_go_of_losers(plan, board, best)
        plans.write_progress(plan, finished=True)
    return results.summary(plan, board, ended, best, files)
