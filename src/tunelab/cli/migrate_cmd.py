"""`tunelab migrate ...`: leave a provider that is closing, in five steps.

    tunelab migrate inventory                 what the account holds, and its days left
    tunelab migrate pull MODEL                its data and metrics, kept here by hash
    tunelab migrate record MODEL              its answers, as a golden set
    tunelab migrate retrain MODEL --to local  a replacement, from the pulled data
    tunelab compare recorded:MODEL NEW_JOB    can we switch?
    tunelab migrate status                    where each model stands, and what to run next

Thin: the work is in tunelab.migrate; this module renders it and asks the cost question.
Progress goes to stderr, so with --json stdout holds one JSON object.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from tunelab.cli.config_flags import ProviderFlags, ProviderValues, TrainingFlags, generated
from tunelab.cli.console import emit_json, err, out, plain
from tunelab.cli.formatting import Col, fitted_table, terminal_safe
from tunelab.cli.train_options import CLOUD, BaseUrlFlag
from tunelab.errors import TransientProviderError, UsageError, command

app = typer.Typer(help="Leave a closing provider: inventory, pull, record, retrain, status.",
                  no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
ModelArg = Annotated[str, typer.Argument(help="A fine-tuned model (ft:...) or its job id, "
                                              "as `tunelab migrate inventory` lists them.")]
YesFlag = Annotated[bool, typer.Option("--yes", "-y", help="Don't ask about the cost.")]


def _emit(payload: Any) -> None:
    emit_json(payload)


def _days(value: int | None) -> str:
    if value is None:
        return "-"
    return "shut down" if value <= 0 else f"{value} days"


# inventory --------------------------------------------------------------------------------
# Ids and model names are what a user copies: never cut (issue 26, item 36).
INVENTORY_COLUMNS = (Col("model", key=True), Col("job", key=True), Col("status", drop=2),
                     Col("base model", wrap=True, min_width=12, drop=6),
                     Col("shutdown", drop=3), Col("left", drop=1),
                     Col("suffix", drop=7), Col("hyperparameters", wrap=True, drop=8),
                     Col("files", wrap=True, min_width=14, drop=5),
                     Col("checkpoints", wrap=True, min_width=8, drop=4))
# The job id goes on its own line under the model, in the same uncut column.
STATUS_COLUMNS = (Col("model / job", key=True), Col("step", drop=2),
                  Col("shutdown", drop=4), Col("left", drop=1),
                  Col("replacement", key=True, drop=5),
                  Col("next", wrap=True, min_width=16, drop=3))


@app.command("inventory")
def inventory(
    provider: Annotated[str, typer.Option("--provider", help="openai, or an OpenAI-compatible "
                                          "endpoint from providers.yaml.")] = "openai",
    base_url: Annotated[str | None, typer.Option("--base-url", help="API base URL.")] = None,
    timeout: Annotated[float | None, typer.Option(
        "--timeout", min=0.1, help="Seconds each read of the account may take, retries and "
                                   "the pages of the job listing included.")] = None,
    json_out: JsonFlag = False,
) -> None:
    """Every fine-tuned model and job of the account: base model, shutdown date and days
    left, suffix, hyperparameters, file ids, checkpoints. Imports each job into the registry
    (`tunelab jobs list/show`); a second run adds nothing twice."""
    from tunelab.migrate.account import open_account
    from tunelab.migrate.inventory import take_inventory
    from tunelab.providers.retry import RetryPolicy

    account = open_account(provider, base_url, RetryPolicy(timeout=timeout))
    reading = plain(f"reading the {account.name} account")
    with err.status(reading) as shown:
        entries = take_inventory(
            account, on_page=lambda pages, jobs: shown.update(plain(
                f"reading the {account.name} account: {jobs} jobs ({pages} pages)")),
            on_note=lambda text: err.print(f"warning: {text}"))
    if json_out:
        _emit({"provider": account.name, "models": [entry.to_dict() for entry in entries]})
        return
    rows = [[entry.fine_tuned_model or "(no model)", entry.job_id or "(no job visible)",
             entry.status or "", entry.base_model, entry.shutdown or "-",
             _days(entry.days_left), entry.suffix or "",
             ", ".join(f"{k} {v}" for k, v in entry.hyperparameters.items()),
             " ".join(f for f in (entry.training_file, entry.validation_file,
                                  *entry.result_files) if f),
             " ".join(str(c["step"]) for c in entry.checkpoints)] for entry in entries]
    out.print(fitted_table(INVENTORY_COLUMNS, rows, out.width,
                           title=f"{account.name}: fine-tuned models and jobs"))
    new = sum(entry.imported == "new" for entry in entries)
    known = sum(entry.imported == "updated" for entry in entries)
    out.print(f"registry: {new} job(s) imported, {known} refreshed. "
              "Next: tunelab migrate pull MODEL (see tunelab migrate status)")


# pull -------------------------------------------------------------------------------------
@app.command("pull")
def pull(
    model: ModelArg,
    max_download_mb: Annotated[float | None, typer.Option(
        "--max-download-mb", min=0.001, help="Largest file to download, in MB (default: "
                                             "the cap SECURITY.md names, 512): a bigger one "
                                             "is refused and nothing of it kept.")] = None,
    json_out: JsonFlag = False,
) -> None:
    """Download the job's training, validation and result files into TUNELAB_HOME/blobs (by
    content hash), check the data with the data doctor, and load the metrics into the
    registry. Run again, it fetches only what is missing."""
    from tunelab.errors import ProviderError
    from tunelab.migrate.pull import pull as run_pull

    with err.status(plain(f"pulling {model}")):  # a model name is no markup (item 22)
        try:
            report = run_pull(model, max_bytes=None if max_download_mb is None
                              else int(max_download_mb * 2**20))
        except TransientProviderError as error:
            again = command("tunelab", "migrate", "pull", model)
            raise TransientProviderError(error.message, code=error.code,
                                         fix=f"run `{again}` again: it keeps the files "
                                             "already whole") from None
        except ProviderError as error:
            if not error.message.startswith("[too_large] "):
                raise
            raise ProviderError(error.message, fix="pass a larger --max-download-mb if the "
                                                   "file is expected to be that big") from None
    if json_out:
        _emit(report.to_dict())
        return
    for item in report.files:
        verb = "downloaded" if item.fetched else "already here"
        out.print(f"{item.role:16} {item.file_id}: {verb}, {item.blob['bytes']:,} bytes -> "
                  f"{item.blob['path']}")
        if item.check:
            verdict = "ok" if item.check["ok"] else f"{item.check['errors']} error(s): " \
                                                    f"{item.check['first_error']}"
            out.print(f"{'':16} data doctor: {item.check['examples']} examples, {verdict}, "
                      f"{item.check['warnings']} warning(s)")
    if report.skipped_rows:
        err.print(f"warning: {report.skipped_rows} row(s) of the result file skipped "
                  "(a step or value that is no finite number, a field too long, or not CSV)")
    out.print(f"metrics: {report.metric_steps} steps in the registry; see them with: "
              + command("tunelab", "jobs", "show", report.job_id))
    if report.held_out:
        out.print(f"no validation file: held out {report.held_out['val']} of "
                  f"{report.held_out['examples']} examples for record and retrain")
    out.print("Next: " + command("tunelab", "migrate", "record", report.model or report.job_id))


# record -----------------------------------------------------------------------------------
def _interactive() -> bool:
    # As `tunelab train` decides whether it may ask: a terminal, and not CI.
    return sys.stdin.isatty() and not os.environ.get("CI")


def _confirm_cost(plan: Any, yes: bool) -> None:
    shown = "unknown (no price for this model)" if plan.dollars is None \
        else f"at most ${plan.dollars:,.4f}"
    err.print(f"{len(plan.todo)} answer(s) to ask of {plan.model} ({plan.done} already "
              f"recorded): {plan.prompt_tokens:,} prompt tokens, up to "
              f"{plan.header.max_tokens} tokens per answer; cost {shown}")
    if yes or not plan.todo:
        return
    if not _interactive():
        raise UsageError(f"recording costs {shown}, and this is not an interactive terminal",
                         fix="pass --yes to accept it")
    if not typer.confirm("Record these answers?", err=True):
        raise UsageError("nothing recorded", fix="lower --samples, or pass --yes")


@app.command("record")
def record(
    model: ModelArg,
    prompts: Annotated[Path | None, typer.Option(
        "--prompts", "--eval", help="More prompts: a .txt file (one a line) or dialogues, "
                                    "besides the job's held-out ones.")] = None,
    samples: Annotated[int, typer.Option("--samples", min=0, help="Sampled answers per "
                                         "prompt, besides the greedy one.")] = 0,
    temperature: Annotated[float, typer.Option("--temperature",
                                               help="Of the sampled answers.")] = 1.0,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1,
                                            help="Longest answer.")] = 512,
    yes: YesFlag = False,
    json_out: JsonFlag = False,
) -> None:
    """Record MODEL's answers as a golden set before it shuts down: one greedy answer per
    held-out prompt plus --samples N at --temperature, saved as OpenAI chat JSONL under
    TUNELAB_HOME/golden. An interrupted run resumes without paying twice."""
    from tunelab.migrate import record as recording

    plan = recording.plan(model, extra=prompts, samples=samples, temperature=temperature,
                          max_tokens=max_tokens)
    _confirm_cost(plan, yes)
    with Progress(TextColumn("{task.description}", markup=False), BarColumn(),
                  MofNCompleteColumn(), console=err, transient=True) as progress:
        task = progress.add_task(terminal_safe(f"recording {plan.model}"), total=plan.total,
                                 completed=plan.done)
        try:
            result = recording.run(plan, lambda done, _: progress.update(task, completed=done))
        except TransientProviderError as error:
            again = command("tunelab", "migrate", "record", model)
            raise TransientProviderError(error.message, code=error.code,
                                         fix=f"run `{again}` again: it asks only what is not "
                                             "recorded") from None
    if json_out:
        _emit(result)
        return
    out.print(f"recorded {result['answers']} answer(s) to {result['prompts']} prompt(s) "
              f"({result['asked']} asked now) -> {result['golden']}")
    out.print("Next: " + command("tunelab", "migrate", "retrain", plan.model, "--to", "local"))


# retrain ----------------------------------------------------------------------------------
# Every TrainConfig key but the pulled files and --preset; the base model as --base-model.
RETRAIN_FLAGS = TrainingFlags.every(
    leave_out=("train_file", "validation_file", "preset"),
    names={"model": ("--base-model", "--model")},
    notes={"epochs": "Instead of the job's n_epochs.",
           "batch_size": "Instead of the job's batch_size.",
           "learning_rate": "Instead of the mapped rate (cloud: a multiplier).",
           "suffix": "Default: the old suffix."})


@app.command("retrain")
@generated
def retrain(
    model: ModelArg,
    to: Annotated[str, typer.Option("--to", help="local, together, fireworks, azure, vertex, "
                                                  "or any provider name.")],
    preset: Annotated[str | None, typer.Option("--preset", help="Local preset.")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="Local config file.")] = None,
    yes: YesFlag = False,
    json_out: JsonFlag = False,
    flags: dict[str, Any] = RETRAIN_FLAGS,
    max_cost: Annotated[float | None, typer.Option(
        "--max-cost", help="Cloud: refuse above this estimate (USD).",
        rich_help_panel=CLOUD)] = None,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Cloud: don't follow.",
                                          rich_help_panel=CLOUD)] = False,
    base_url: BaseUrlFlag = None,
    target: ProviderValues = ProviderFlags(),
) -> None:
    """Train a replacement for MODEL from its pulled data, here (--to local) or on another
    provider, through `tunelab train`'s own path. OpenAI's n_epochs, batch_size and
    learning_rate_multiplier map to the target's (a DPO job's method and beta too: its
    replacement is trained with DPO); the new job is linked to the old one
    (metadata retrain_of, replaces), so `tunelab serve` answers under the old name."""
    from tunelab.cli.train_options import CloudOptions, TrainOptions
    from tunelab.cli.train_run import start, train_request
    from tunelab.config import resolve_config
    from tunelab.migrate import retrain as retraining
    from tunelab.providers.base import ProviderSettings

    base_rate = resolve_config(preset=preset, config_file=config).learning_rate
    plan = retraining.plan(model, to, base_learning_rate=base_rate)
    # The plan maps OpenAI's multiplier: a local rate, or the multiplier a cloud job takes.
    mapped = {"epochs": plan.epochs, "batch_size": plan.batch_size, "suffix": plan.job.suffix,
              "learning_rate": plan.learning_rate, "method": plan.method, "beta": plan.beta,
              "model": plan.base_model,
              "validation_file": str(plan.validation_file) if plan.validation_file else None}
    options = TrainOptions(
        file=plan.training_file, preset=preset, config_file=config, json=json_out,
        flags={**{key: value for key, value in mapped.items() if value is not None}, **flags},
        cloud=CloudOptions(
            provider=to, settings=ProviderSettings(base_url=base_url, own=target.own(to)),
            learning_rate_multiplier=flags.get("learning_rate") or
            plan.learning_rate_multiplier,
            max_cost=max_cost, no_wait=no_wait, yes=yes),
        metadata=retraining.labels(plan))
    err.print(f"retraining {plan.job.fine_tuned_model} ({plan.job.id}) on {to} from "
              f"{plan.training_file}" + (f"; mapped: {', '.join(plan.mapping.values())}"
                                         if plan.mapping else ""))
    if plan.base_model and not flags.get("model"):
        err.print(f"base model on {to}: {plan.base_model} ({plan.base_reason}); "
                  "--base-model chooses another")
    code, started = start(train_request(options), options)
    linked = started.job  # the door hands back the job it made (None: refused, a dry run)
    if linked is not None:
        retraining.note(plan, linked)
        err.print(f"{linked.id} is linked to {plan.job.id} (replaces "
                  f"{plan.job.fine_tuned_model}). Next: "
                  + command("tunelab", "compare", f"recorded:{plan.job.fine_tuned_model}",
                            linked.id, "--report", "compare.html"))
    raise typer.Exit(code)


# status -----------------------------------------------------------------------------------
@app.command("status")
def status(json_out: JsonFlag = False) -> None:
    """Each inventoried model's step (inventoried, pulled, recorded, retrained, compared),
    its days left, and the next command to run."""
    from tunelab.migrate.status import STEPS
    from tunelab.migrate.status import status as read_status

    rows = read_status()
    if json_out:
        _emit({"steps": list(STEPS), "models": [row.to_dict() for row in rows]})
        return
    if not rows:
        out.print("nothing inventoried yet. Start with: tunelab migrate inventory")
        return
    cells = []
    for row in rows:
        cells += [[row.model or "(no model)",
                   f"{row.step} ({STEPS.index(row.step) + 1}/{len(STEPS)})",
                   row.shutdown or "-", _days(row.days_left),
                   f"{row.replacement} on {row.destination}" if row.replacement else "",
                   row.next],
                  [f"  {row.job_id} ({row.status})", "", "", "", "", ""]]
    out.print(fitted_table(STATUS_COLUMNS, cells, out.width, title="tunelab migrate status"))
