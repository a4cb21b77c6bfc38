"""`tunelab sweep`: train one dataset with several settings, keep the best.

Parse the flags into a SweepRequest, open (or find to resume) the sweep, draw its trials as a
live table on stderr while tunelab.sweep runs them, then print the winner (or one JSON
object with --json). Everything else lives in tunelab.sweep.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from rich.live import Live
from rich.table import Table

from tunelab.cli.config_flags import ProviderFlags, ProviderValues, TrainingFlags, generated
from tunelab.cli.console import emit_json, err, out, plain, styled
from tunelab.cli.formatting import Col, fitted_table
from tunelab.cli.train_options import CLOUD, BaseUrlFlag, TimeoutFlag, known_provider
from tunelab.config import declared
from tunelab.errors import command

LIST_HELP = "One value, a list (a,b,c: every one is tried) or a range (low..high, with --trials)."
# Every TrainConfig key but the FILE argument, --preset and the trials' own folders; those
# the declaration marks sweepable take a list or a range.
SWEEP_FLAGS = TrainingFlags.every(
    leave_out=("train_file", "preset", "output_dir"), text=frozenset(declared(sweep=True)),
    notes={**{key: LIST_HELP for key in declared(sweep=True)},
           "learning_rate": f"Log scale as a range. {LIST_HELP}",
           "validation_file": "Trials are ranked by its loss.",
           "model": "One for all trials.",
           "eval_every": "More chances to prune.",
           "save_every": "What a killed trial resumes from.",
           "full": "Each trial then loads its own copy of the base."})


@generated
def sweep(
    file: Path | None = typer.Argument(None, help="Training data (.jsonl, .json or .csv). "
                                                  "Not needed with --resume."),
    provider: str = typer.Option("local", "--provider", help="local, openai, vertex or a "
                                 "custom endpoint profile (cloud: the grid's jobs run there)."),
    preset: str | None = typer.Option(None, "--preset", help="The preset trials start from."),
    config: Path | None = typer.Option(None, "--config", help="JSON or YAML config trials "
                                       "start from; flags override it."),
    trials: int | None = typer.Option(None, "--trials", help="Sample N trials with Optuna "
                                      "TPE over the lists and ranges instead of the grid."),
    budget_minutes: float | None = typer.Option(None, "--budget-minutes", help="Start no "
                                                "new trial after this many minutes."),
    keep_all: bool = typer.Option(False, "--keep-all", help="Keep every trial's weights, "
                                  "not only the winner's."),
    resume: str | None = typer.Option(None, "--resume", help="Continue sweep SWEEP_ID "
                                      "(running the same command again does too)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object at the end."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Don't ask to confirm a sweep of many "
                             "trials, or (cloud) its cost."),
    flags: dict[str, Any] = SWEEP_FLAGS,
    max_cost: float | None = typer.Option(None, "--max-cost", rich_help_panel=CLOUD,
                                          help="Cloud: refuse above this estimate for the "
                                               "whole sweep (USD)."),
    no_wait: bool = typer.Option(False, "--no-wait", rich_help_panel=CLOUD, help="Cloud: "
                                 "create the jobs, don't watch them (resume the sweep later "
                                 "to)."),
    interval: float = typer.Option(60.0, "--interval", help="Cloud: seconds between polls.",
                                   rich_help_panel=CLOUD),
    timeout: TimeoutFlag = None,
    base_url: BaseUrlFlag = None,
    target: ProviderValues = ProviderFlags(),
) -> None:
    """Train FILE with every combination of the listed settings and keep the best.

    Examples: `tunelab sweep data.jsonl --validation-file val.jsonl --learning-rate
    1e-4,5e-4,2e-3 --lora-r 8,16`; `tunelab sweep data.jsonl --validation-file val.jsonl
    --learning-rate 1e-5..1e-3 --trials 8 --budget-minutes 60`; `tunelab sweep --resume
    sweep-...`.
    """
    from tunelab.sweep.runner import SweepRequest

    known_provider(provider)
    own = target.own(provider)
    cloud = {"base_url": base_url, **(own.model_dump() if own is not None else {})}
    varied = {key: flags.pop(key) for key in declared(sweep=True) if key in flags}
    validation_file = flags.pop("validation_file", None)
    request = SweepRequest(
        file=file, validation_file=Path(validation_file) if validation_file else None,
        preset=preset, config_file=config, fixed=flags, varied=varied, trials=trials,
        budget_minutes=budget_minutes, keep_all=keep_all, provider=provider,
        cloud={key: value for key, value in cloud.items() if value is not None})
    watch = CloudWatch(yes=yes, max_cost=max_cost, wait=not no_wait, interval=interval,
                       timeout=timeout)
    raise typer.Exit(run_sweep(request, resume=resume, watch=watch, json_out=json_out))


@dataclass(frozen=True)
class CloudWatch:
    """The flags that steer a cloud sweep from here: confirmation, waiting, polling."""

    yes: bool = False
    max_cost: float | None = None
    wait: bool = True
    interval: float = 60.0
    timeout: float | None = None


def run_sweep(request: Any, *, resume: str | None, watch: CloudWatch, json_out: bool) -> int:
    """Open or resume the sweep, run it with a live table, print the result; exit code."""
    from tunelab.sweep.board import Board
    from tunelab.sweep.runner import execute, open_sweep, resume_sweep
    from tunelab.sweep.space import size

    if resume:
        plan, resumed = resume_sweep(resume), True
    else:
        plan, resumed = open_sweep(request, confirm=lambda trials: _confirm_trials(trials,
                                                                                  watch.yes))
    verb = "resuming" if resumed else "started"
    trials = size(plan.parsed_space(), plan.trials)
    err.print(styled((f"sweep {plan.id}", "bold"), f" {verb}: {plan.mode}, {trials:,} "
                     f"trial(s), {plan.provider}; folder {plan.folder}"))
    # peft calls a transformers API that warns about its own rename on every load: noise.
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
    board = Board(plan.id, plan.provider, plan.mode)
    stop = threading.Event()
    with Live(console=err, refresh_per_second=2, transient=False) as live:
        board.listener = lambda current: live.update(trial_table(current))
        summary = execute(plan, board, stop, target=_target(plan, watch),
                          confirm=lambda quote: _confirm(quote, watch, live),
                          wait=watch.wait, interval=watch.interval)
        live.update(trial_table(board))
    if json_out:
        emit_json(summary)
    else:
        _print_summary(summary)
    if summary["ended"] == "interrupted":
        return 130
    return 0 if summary["winner"] or summary["ended"] == "created" else 1


def _confirm_trials(trials: int, yes: bool) -> None:
    """A sweep of more than ASK_ABOVE_TRIALS trials starts only when the user says so."""
    from tunelab.cli.run_reporter import interactive
    from tunelab.errors import UsageError
    from tunelab.sweep.runner import ASK_ABOVE_TRIALS

    if yes:
        return
    if not interactive():
        raise UsageError(f"this sweep would run {trials:,} trials (above {ASK_ABOVE_TRIALS} "
                         "they are confirmed), and this is not an interactive terminal",
                         fix="pass --yes to run them all, or list fewer values (or sample "
                             "some with --trials N)")
    if not typer.confirm(f"This sweep would run {trials:,} trials, one training each. "
                         "Start it?", err=True):
        raise UsageError("sweep not started",
                         fix="list fewer values, or sample some with --trials N")


def _target(plan: Any, watch: CloudWatch) -> Any:
    """Where the plan's trials go, as its flags set it (`plan.cloud`: --base-url and the
    provider's own)."""
    from tunelab.cli.cloud_cmd import with_retries
    from tunelab.providers import provider_entry
    from tunelab.providers.base import ProviderSettings

    entry = provider_entry(plan.provider)
    model = entry.settings if entry is not None else None
    own = model(**{key: value for key, value in plan.cloud.items()
                   if key in model.model_fields}) if model is not None else None
    settings = ProviderSettings(base_url=plan.cloud.get("base_url"), own=own)
    from tunelab.runs import Target

    return Target(plan.provider, with_retries(settings, watch.timeout))


def _confirm(quote: Any, watch: CloudWatch, live: Live) -> None:
    """Show every trial's estimate and the total, then ask as `tunelab train` does."""
    from tunelab.cli.run_reporter import TerminalReporter

    live.stop()  # a prompt cannot share the terminal with a live table
    reporter = TerminalReporter(yes=watch.yes, max_cost=watch.max_cost)
    for warning in quote.warnings:
        reporter.warn(warning)
    for index, estimate in quote.estimates:
        price = "unknown" if estimate.dollars is None else f"${estimate.dollars:,.2f}"
        err.print(plain(f"  trial {index}: {estimate.epochs} epoch(s), "
                        f"{estimate.billed_tokens:,} tokens/epoch, {price}"))
    total = quote.total
    shown = "unknown (no training price for this model)" if total.dollars is None \
        else f"${total.dollars:,.2f}"
    err.print(plain(f"💰 Estimated cost of the sweep's {len(quote.estimates)} jobs on "
                    f"{total.provider} {total.model}: {shown}"))
    reporter.confirm_cost(total)
    live.start()


# The job id is never cut (it is what `jobs show` takes); the note leaves first, then time.
TRIAL_COLUMNS = (Col("#"), Col("parameters", wrap=True, min_width=12),
                 Col("job", key=True), Col("status", drop=2), Col("best val loss"),
                 Col("steps", drop=3), Col("time", drop=4),
                 Col("note", wrap=True, min_width=16, drop=5))


def trial_table(board: Any, width: int | None = None) -> Table:
    """Each trial: its parameters, status, best validation loss, steps and time; fitted to
    the terminal as `jobs list` is."""
    from tunelab.sweep.results import winner
    from tunelab.sweep.space import label

    best = winner(board)
    base = f"; base model's validation loss {board.base_valid_loss:.4f}" \
        if board.base_valid_loss is not None else ""
    rows = []
    for row in board.ordered():
        steps = f"{row.step}/{row.total_steps}" if row.total_steps else str(row.step or "")
        loss = "" if row.best_valid_loss is None else f"{row.best_valid_loss:.4f}"
        rows.append([str(row.index), label(row.params), row.job_id or "", row.status,
                     loss + (" ★" if row is best else ""), steps,
                     f"{row.seconds:.0f}s" if row.seconds else "", row.note or ""])
    return fitted_table(TRIAL_COLUMNS, rows, width or err.width,
                        title=f"sweep {board.sweep_id} ({board.mode}{base})")


def _print_summary(summary: dict[str, Any]) -> None:
    winner = summary.get("winner")
    if summary["ended"] == "interrupted":
        out.print("sweep interrupted; resume with: "
                  + command("tunelab", "sweep", "--resume", summary["sweep"]))
    elif summary["ended"] == "created":
        out.print("jobs created; watch them with: "
                  + command("tunelab", "sweep", "--resume", summary["sweep"]))
    if winner is None:
        if summary["ended"] != "created":
            out.print("no trial succeeded with a validation loss: no winner")
        return
    out.print(styled(("winner:", "bold"), f" trial {winner['index']} {winner['job_id']} "
                     f"best validation loss {winner['best_valid_loss']:.4f}"))
    if summary.get("winner_vs_base") is not None:
        out.print(f"  {summary['winner_vs_base']:+.1%} against the base model's "
                  f"{summary['base_valid_loss']:.4f}")
    for key in ("curves", "winner_config", "train_command"):
        if summary.get(key):
            out.print(plain(f"{key.replace('_', ' ')}: {summary[key]}"))
