"""`tunelab jobs ...`: list, show, events, checkpoints, compare, watch and cancel.

show/events/checkpoints/cancel ask the job's provider through the provider contract, the
local one included (it reads the registry its trainer writes); a cloud job's registry row is
refreshed from its provider on the way, never stale. list and compare read the registry.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.table import Table

from tunelab.cli.config_flags import ProviderFlags, ProviderValues, generated
from tunelab.cli.console import emit_json, out, styled
from tunelab.cli.formatting import (
    Col,
    curve,
    duration,
    event_line,
    fitted_table,
    local_time,
    local_time_ago,
    metric,
    pairs_table,
)
from tunelab.cli.train_options import BaseUrlFlag, TimeoutFlag
from tunelab.errors import command
from tunelab.local.liveness import process_gone
from tunelab.registry import JobRecord, metrics, open_registry

app = typer.Typer(help="List, inspect, compare, watch and cancel fine-tuning jobs.",
                  no_args_is_help=True)
LOCAL = "local"
CLOUD_PROVIDER_HELP = "Cloud: the job's provider, for a job not in the registry yet."
# Options shared by several subcommands, declared once.
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON.")]
CloudProvider = Annotated[str | None, typer.Option("--provider", help=CLOUD_PROVIDER_HELP)]
# A job id names where the job lives (Vertex's carries its project and region), so only
# `list` takes the providers' own flags; --base-url and --timeout are shared by all.
CloudBaseUrl = BaseUrlFlag
CloudTimeout = TimeoutFlag


@app.command("list")
@generated
def list_jobs(
    provider: str | None = typer.Option(None, "--provider", help="Only this provider's jobs."),
    limit: int = typer.Option(50, "--limit", help="At most this many, newest first."),
    sweep: str | None = typer.Option(None, "--sweep", help="Only this sweep's trials."),
    json_out: JsonFlag = False,
    base_url: CloudBaseUrl = None,
    timeout: CloudTimeout = None,
    target: ProviderValues = ProviderFlags(),
) -> None:
    """Every job in the registry, newest first; with a cloud --provider, merged with the
    provider's own list (the seed's --list-jobs)."""
    own = target.own(provider or LOCAL)  # a provider's flags without it are refused
    if provider and _mirrored(provider):
        from tunelab.cli.cloud_cmd import print_remote_list

        raise typer.Exit(print_remote_list(provider, base_url=base_url, limit=limit,
                                           as_json=json_out, timeout=timeout, own=own))
    with open_registry() as registry:
        jobs = registry.list_jobs(provider=provider, limit=limit, sweep=sweep)
    if json_out:
        emit_json({"jobs": [_summary(job) for job in jobs]})
        return
    out.print(jobs_table(jobs, out.width))


# Drop order at a narrow terminal: the sweep leaves first, status never; the id is never cut.
JOB_COLUMNS = (Col("id", key=True), Col("provider", drop=3), Col("status", drop=1),
               Col("base model", wrap=True, min_width=12, drop=5),
               Col("fine-tuned model", wrap=True, min_width=20, drop=2),
               Col("created", wrap=True, drop=4), Col("duration", drop=6))
SWEEP_COLUMN = Col("sweep", drop=7)  # whole or not at all: `--sweep` takes it


def jobs_table(jobs: list[JobRecord], width: int) -> Table:
    rows = [[job.id, job.provider, _status(job), job.base_model or "",
             job.fine_tuned_model or "", local_time(job.created_at), _duration(job)]
            for job in jobs]
    columns = JOB_COLUMNS
    if any(_sweep_of(job) for job in jobs):  # the column only where sweeps were run
        columns = (*JOB_COLUMNS, SWEEP_COLUMN)
        rows = [[*row, _sweep_of(job)] for row, job in zip(rows, jobs, strict=True)]
    return fitted_table(columns, rows, width, title="jobs")


# A running local job whose process is gone (kill -9, an OOM kill, a reboot) is shown so, not
# changed: a read does not write the registry, whose finished statuses are final, and the
# same home may be shared with a machine whose processes this one cannot see. Resuming it
# (or `jobs cancel`, which records that no process was running it) settles it.
GONE = "running (process gone)"


def _status(job: JobRecord) -> str:
    return GONE if process_gone(job) else job.status


def _sweep_of(job: JobRecord) -> str:
    """"sweep-… #N" for a sweep's trial, else ""."""
    meta = job.metadata or {}
    return f"{meta['sweep']} #{meta.get('trial', '?')}" if meta.get("sweep") else ""


@app.command("show")
def show(job_id: str = typer.Argument(..., help="Job id, or the model it made."),
         json_out: JsonFlag = False, timeout: CloudTimeout = None) -> None:
    """One job: status, model, metrics, config and error."""
    with open_registry() as registry:  # a model name (ft:..., Azure's BASE.ft-...) names its job
        made = None if registry.find_job(job_id) else registry.find_job_by_model(job_id)
    job_id = made.id if made is not None else job_id
    job = _refreshed(job_id, timeout)
    if json_out:
        emit_json(job.to_dict())
        return
    with open_registry() as registry:
        rows = registry.list_metrics(job_id)
    out.print(job_view(job, rows))


def job_view(job: JobRecord, rows: list[dict[str, Any]], now: float | None = None) -> Group:
    """`tunelab jobs show` for a person: the job, its metrics with their loss curves, its
    config; local dates, aligned columns. `--json` keeps the machine values."""
    status = job.status
    if process_gone(job):
        status = (f"{GONE}: resume it with {command('tunelab', 'train', '--resume', job.id)}"
                  f", or settle it with {command('tunelab', 'jobs', 'cancel', job.id)}")
    facts = [("provider", job.provider), ("status", status),
             ("base model", job.base_model), ("fine-tuned model", job.fine_tuned_model),
             ("created", local_time_ago(job.created_at, now)),
             ("finished", local_time_ago(job.finished_at, now)),
             ("duration", _duration(job)), ("run dir", job.run_dir),
             ("error", _error_text(job.error))]
    parts: list[Any] = [styled((job.id, "bold")),
                        pairs_table((key, item) for key, item in facts if item)]
    shown = _metric_rows(job.metrics or {}, rows)
    if shown:
        parts += ["", pairs_table(shown, title="metrics")]
    if job.config is not None:
        parts += ["", pairs_table(sorted(job.config_dict().items()), title="config")]
    return Group(*parts)


def _error_text(error: dict[str, Any] | None) -> str:
    if not error:
        return ""
    code = f"[{error['code']}] " if error.get("code") else ""
    return f"{code}{error.get('message') or ''}".strip()


def _metric_rows(summary: dict[str, Any], rows: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """The summary's metrics, each loss with the curve of its per-step rows beside it. A
    loss with rows and no summary value (a cloud job's valid_loss) shows its last point."""
    series = {name: [row[name] for row in rows if row.get(name) is not None]
              for name in (metrics.TRAIN_LOSS, metrics.VALID_LOSS)}
    values = {name: points[-1] for name, points in series.items() if points}
    values.update(summary)
    return [(name, metric(item), curve(series.get(name, []))) for name, item in values.items()]


@app.command("events")
def events(job_id: str = typer.Argument(..., help="Job id."),
           json_out: JsonFlag = False,
           provider: CloudProvider = None,
           base_url: CloudBaseUrl = None,
           timeout: CloudTimeout = None
           ) -> None:
    """A job's events, oldest first."""
    from tunelab.cli.cloud_cmd import print_events

    raise typer.Exit(print_events(job_id, provider=provider, base_url=base_url,
                                  as_json=json_out, timeout=timeout))


@app.command("checkpoints")
def checkpoints(job_id: str = typer.Argument(..., help="Job id."),
                json_out: JsonFlag = False,
                provider: CloudProvider = None,
                base_url: CloudBaseUrl = None,
                timeout: CloudTimeout = None
                ) -> None:
    """A job's checkpoints, on any provider: a local run's steps, epochs and latest/best
    pointers; OpenAI's per-epoch checkpoints (each a model `tunelab test` can ask)."""
    from tunelab.cli.cloud_cmd import print_checkpoints

    raise typer.Exit(print_checkpoints(job_id, provider=provider, base_url=base_url,
                                       as_json=json_out, timeout=timeout))


@app.command("compare")
def compare(job_a: str = typer.Argument(..., help="First job id."),
            job_b: str = typer.Argument(..., help="Second job id."),
            json_out: JsonFlag = False) -> None:
    """Two jobs side by side, local or cloud: config differences, validation and training
    losses, token accuracy, tokens, tokens/s and duration."""
    with open_registry() as registry:
        first, second = registry.get_job(job_a), registry.get_job(job_b)
        report = compare_jobs(first, second, registry.list_metrics(job_a),
                              registry.list_metrics(job_b))
    if json_out:
        emit_json(report)
        return
    table = Table(title=f"{job_a} vs {job_b}")
    for column in ("", "A", "B"):
        table.add_column(column)
    for key, (left, right) in report["config_diff"].items():
        table.add_row(f"config: {key}", str(left), str(right))
    for key, (left, right) in report["results"].items():
        table.add_row(key, _cell(left), _cell(right))
    out.print(table)


def compare_jobs(first: JobRecord, second: JobRecord, first_metrics: list[dict],
                 second_metrics: list[dict]) -> dict[str, Any]:
    configs = first.config_dict(), second.config_dict()
    diff = {key: (configs[0].get(key), configs[1].get(key))
            for key in sorted(configs[0].keys() | configs[1].keys())
            if configs[0].get(key) != configs[1].get(key)}

    left, right = job_results(first, first_metrics), job_results(second, second_metrics)
    return {"a": first.id, "b": second.id, "config_diff": diff,
            "results": {key: (left.get(key), right.get(key))
                        for key in [*left, *(key for key in right if key not in left)]}}


def job_results(job: JobRecord, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One job's column, in the metric vocabulary. Per-step rows first (a cloud job has
    only those), the job's summary where no row says."""
    summary = job.metrics or {}
    valid = [loss for loss in map(metrics.validation_loss, rows) if loss is not None]

    def last(name: str) -> Any:
        return next((row[name] for row in reversed(rows) if row.get(name) is not None),
                    summary.get(name))

    return {"status": job.status,
            metrics.BEST_VALID_LOSS: min(valid) if valid else summary.get(metrics.BEST_VALID_LOSS),
            metrics.VALID_LOSS: valid[-1] if valid else metrics.validation_loss(summary),
            metrics.VALID_ACCURACY: last(metrics.VALID_ACCURACY),
            metrics.TRAIN_LOSS: summary.get(metrics.TRAIN_LOSS),
            metrics.LAST_TRAIN_LOSS: summary.get(metrics.LAST_TRAIN_LOSS,
                                                 last(metrics.TRAIN_LOSS)),
            metrics.TRAIN_ACCURACY: last(metrics.TRAIN_ACCURACY),
            metrics.TRAINED_TOKENS: last(metrics.TRAINED_TOKENS),
            metrics.TOKENS_PER_S: summary.get(metrics.TOKENS_PER_S),
            "duration_s": _seconds(job),
            # A preference (DPO) job's own metrics, where it has them.
            **{name: last(name) for name in (*metrics.PREFERENCE_VALID_METRICS,
                                             *metrics.PREFERENCE_TRAIN_METRICS)
               if last(name) is not None}}


@app.command("watch")
def watch(job_id: str = typer.Argument(..., help="Job id."),
          interval: float | None = typer.Option(
              None, "--interval", help="Seconds between polls (default: 1 for a "
                                                "local job, 60 for a cloud one)."),
          json_out: bool = typer.Option(False, "--json", help="Print the final job as JSON."),
          provider: CloudProvider = None,
          base_url: CloudBaseUrl = None,
          timeout: CloudTimeout = None
          ) -> None:
    """Follow a job's events and metrics live until it ends."""
    if _remote_of(job_id, provider, base_url, timeout) is not None:
        from tunelab.cli.cloud_cmd import watch_remote

        raise typer.Exit(watch_remote(job_id, provider=provider, base_url=base_url,
                                      interval=interval or 60.0,
                                      as_json=json_out, timeout=timeout))
    with open_registry() as registry:
        seen, last_step = 0, 0
        while True:
            for event in registry.list_events(job_id, after=seen):
                seen = event.seq
                if not json_out:
                    print(event_line(event.created_at, event.level, event.message),
                          flush=True)
            for row in registry.list_metrics(job_id):
                if row["step"] > last_step and metrics.TRAIN_LOSS in row and not json_out:
                    print(f"step {row['step']} train_loss {row[metrics.TRAIN_LOSS]:.4f} "
                          f"{row.get(metrics.TOKENS_PER_S, 0):.0f} tok/s", flush=True)
                last_step = max(last_step, row["step"])
            job = registry.get_job(job_id)
            if job.is_terminal:
                break
            if process_gone(job):  # it will never end: say so rather than wait forever
                print(f"{job_id} is {GONE}; resume it with "
                      f"{command('tunelab', 'train', '--resume', job_id)}", flush=True)
                break
            time.sleep(interval or 1.0)
    if json_out:
        emit_json(_summary(job))
    raise typer.Exit(0 if job.status == "succeeded" else 1)


@app.command("cancel")
def cancel(job_id: str = typer.Argument(..., help="Job id."),
           json_out: JsonFlag = False,
           provider: CloudProvider = None,
           base_url: CloudBaseUrl = None,
           timeout: CloudTimeout = None
           ) -> None:
    """Cancel a job. A live local run checkpoints and stops after its current step."""
    from tunelab.cli.cloud_cmd import cancel_job

    raise typer.Exit(cancel_job(job_id, provider=provider, base_url=base_url,
                                as_json=json_out, timeout=timeout))


def _mirrored(provider: str) -> bool:
    """Whether a provider's jobs live there, to be asked (a cloud service), rather than in the
    registry, which its trainer writes itself (the local provider)."""
    from tunelab.providers import get_provider

    return get_provider(provider).capabilities.mirrored


def _remote_of(job_id: str, provider: str | None, base_url: str | None,
               timeout: float | None) -> Any:
    """The provider JOB lives on when that provider is to be asked (see `_mirrored`), else
    None; --provider reaches a job the registry has not seen (created elsewhere). An unknown
    job without --provider is NotFoundError."""
    from tunelab.cli.cloud_cmd import provider_for_job

    remote = provider_for_job(job_id, provider, base_url, timeout)
    return remote if remote.capabilities.mirrored else None


def _refreshed(job_id: str, timeout: float | None = None) -> JobRecord:
    """The registry row, refreshed first from its provider while the job is still going."""
    with open_registry() as registry:
        job = registry.get_job(job_id)
    if job.is_terminal:
        return job
    from tunelab.cli.cloud_cmd import provider_for_job, refresh

    refresh(provider_for_job(job_id, None, None, timeout), job_id)
    with open_registry() as registry:
        return registry.get_job(job_id)


def _summary(job: JobRecord) -> dict[str, Any]:
    return {"id": job.id, "provider": job.provider, "status": job.status,
            "base_model": job.base_model, "fine_tuned_model": job.fine_tuned_model,
            "created_at": job.created_at, "finished_at": job.finished_at,
            "duration_s": _seconds(job), "run_dir": job.run_dir, "metrics": job.metrics,
            "error": job.error, "metadata": job.metadata}


def _seconds(job: JobRecord) -> float | None:
    end = job.finished_at or (None if job.is_terminal else time.time())
    return round(end - job.created_at, 1) if end else None


def _duration(job: JobRecord) -> str:
    seconds = _seconds(job)
    return "" if seconds is None else duration(seconds)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)
