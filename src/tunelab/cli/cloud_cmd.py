"""Training on a cloud provider, and the job commands every provider shares.

`train_remote(options)` is called by `tunelab train` when --provider is not local. The job
functions below (`follow`, `cancel_job`, `print_events`, `print_checkpoints`, the list) back
`tunelab jobs ...` for a job on any provider, the local one included, through the provider
contract. All the cloud work is in tunelab.providers.cloud_training; this module renders it
and asks the questions. Progress goes to stderr, so that with --json stdout holds exactly
one JSON object.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import typer
from rich.live import Live
from rich.table import Table
from rich.text import Text

from tunelab.cli.console import err, out, plain
from tunelab.cli.formatting import Col, event_line, fitted_table
from tunelab.cli.train_options import CloudOptions, TrainOptions, known_provider
from tunelab.errors import UsageError
from tunelab.providers import cloud_training
from tunelab.providers.base import (
    FileRef,
    Job,
    JobSpec,
    Provider,
    ProviderSettings,
)
from tunelab.providers.cloud_training import refresh
from tunelab.providers.retry import RetryNotice, RetryPolicy
from tunelab.registry.metrics import TRAIN_LOSS, validation_loss

AUTO_TEST_PROMPTS = 5


def _emit_json(payload: dict[str, Any]) -> None:
    print(json.dumps(payload, ensure_ascii=False, default=str))


def _interactive() -> bool:
    return sys.stdin.isatty() and not os.environ.get("CI")


def _provider(options: CloudOptions) -> Provider:
    from tunelab.providers import get_provider

    return get_provider(options.provider, with_retries(options.settings, options.timeout))


def _show_retry(notice: RetryNotice) -> None:
    err.print(f"↻ {notice.render()}", markup=False)


def with_retries(settings: ProviderSettings, timeout: float | None) -> ProviderSettings:
    """`settings` with --timeout, and each retry shown on stderr as it happens."""
    if timeout is not None and not timeout > 0:
        raise UsageError(f"--timeout {timeout:g} must be more than 0 seconds",
                         fix="pass e.g. --timeout 60")
    return replace(settings, retry=RetryPolicy(timeout=timeout, on_retry=_show_retry))


def job_spec(options: TrainOptions, model: str, training_file: str,
             validation_file: str | None) -> JobSpec:
    """The one JobSpec of a cloud run; the files are local paths (dry run) or upload ids."""
    flags = options.flags
    return JobSpec(base_model=model, training_file=training_file,
                   validation_file=validation_file, suffix=flags.get("suffix"),
                   epochs=flags.get("epochs"),
                   learning_rate=options.cloud.learning_rate_multiplier or
                   flags.get("learning_rate"),
                   batch_size=flags.get("batch_size"), seed=flags.get("seed"),
                   metadata=dict(options.metadata))


def _validation_file(options: TrainOptions) -> Path | None:
    """--validation-file, as a path."""
    given = options.flags.get("validation_file")
    return Path(given) if given else None


# train ------------------------------------------------------------------------------------
def train_remote(options: TrainOptions) -> int:
    """The cloud path of `tunelab train`; returns the exit code."""
    from tunelab.config import refuse_cloud_preset
    from tunelab.data.pricing import default_model

    cloud, flags = options.cloud, options.flags
    known_provider(cloud.provider)  # before the data is read and priced
    refuse_cloud_preset(cloud.provider, options.preset)
    if flags.get("prompts"):  # asked only after the job succeeds: a bad file must fail now
        from tunelab.evaluate.prompts import load_prompts

        load_prompts(Path(flags["prompts"]))
    if options.file is None:
        raise UsageError("FILE is missing", fix=f"tunelab train FILE --provider {cloud.provider}")
    cloud_training.require_fine_tuning(cloud.provider)
    model = flags.get("model") or default_model(cloud.provider)
    warning = cloud_training.lifecycle_gate(cloud.provider, cloud.settings.base_url, model)
    _warn(warning)
    report, estimate = _check(options, options.file, model)
    if cloud.validate_only or options.dry_run:
        return _checked_only(options, report, estimate, model)
    provider = _provider(cloud)
    _check_live_lifecycle(cloud, model, warning)
    _confirm_cost(estimate, cloud)
    uploads = _upload(provider, options.file, _validation_file(options))
    if cloud.upload_only:
        if options.json:
            _emit_json({"files": {role: asdict(ref) for role, ref in uploads.items()}})
        return 0
    job = _create(provider, options, options.file, model, uploads, estimate)
    if cloud.no_wait:
        err.print(f"Not waiting. Follow it with: tunelab jobs watch {job.id}")
        if options.json:
            _emit_json(_job_summary(provider, job))
        return 0
    return follow(provider, job.id, interval=cloud.interval or 60.0, as_json=options.json,
                  prompts=flags.get("prompts"),
                  timeout=cloud.timeout)


def _warn(warning: str | None) -> None:
    if warning:
        err.print(f"⚠️  {warning}", markup=False)


def _check_live_lifecycle(cloud: CloudOptions, model: str, shown: str | None) -> None:
    """Where a key is present, the endpoint's own shutdown date wins over the table: refuse
    on it, and warn again only when it changes what was already said."""
    live = cloud_training.live_shutdown(cloud.provider, cloud.settings.base_url, model)
    if live is not None:
        warning = cloud_training.lifecycle_gate(cloud.provider, cloud.settings.base_url, model,
                                                live_shutdown=live)
        _warn(warning if warning != shown else None)


def _check(options: TrainOptions, file: Path,
           model: str) -> tuple[Any, cloud_training.CostEstimate]:
    """Check the training (and validation) file and estimate the cost, before any key."""
    name, epochs = options.cloud.provider, options.flags.get("epochs")
    report = cloud_training.check_data(file, provider=name, model=model, epochs=epochs)
    if _validation_file(options):
        cloud_training.check_data(_validation_file(options), provider=name, model=model,
                                  epochs=epochs, role="--validation-file")
    estimate = cloud_training.estimate_cost(report, provider=name, model=model, epochs=epochs)
    _show_check(report, estimate)
    return report, estimate


def _checked_only(options: TrainOptions, report: Any, estimate: cloud_training.CostEstimate,
                  model: str) -> int:
    """--validate-only, and --dry-run: what would be sent, with nothing uploaded or created."""
    payload: dict[str, Any] = {"ok": True, "examples": report.valid_examples,
                               "cost": estimate.as_dict()}
    if options.dry_run:
        validation = _validation_file(options)
        spec = job_spec(options, model, str(options.file), str(validation) if validation
                        else None)
        description = _provider(options.cloud).describe_request(spec)
        payload = {**description, **payload}
        err.print("Dry run: nothing was uploaded and no job was created.")
        if not options.json:
            out.print(json.dumps(description, indent=2, ensure_ascii=False), markup=False)
    if options.json:
        _emit_json(payload)
    return 0


def _show_check(report: Any, estimate: cloud_training.CostEstimate) -> None:
    err.print(f"✅ Validation passed: {report.valid_examples} training examples")
    if report.warnings.total:
        err.print(f"   {report.warnings.total} warning(s): run `tunelab data check` to see them")
    price = "unknown (no training price for this model)" if estimate.dollars is None \
        else f"${estimate.dollars:,.2f}"
    err.print(f"💰 Estimated training cost on {estimate.provider} {estimate.model}: {price} "
              f"({estimate.billed_tokens:,} tokens × {estimate.epochs} epochs)")


def _confirm_cost(estimate: cloud_training.CostEstimate, options: CloudOptions) -> None:
    max_cost = options.max_cost
    if options.yes or not cloud_training.needs_confirmation(estimate, max_cost):
        return
    shown = "unknown" if estimate.dollars is None else f"${estimate.dollars:,.2f}"
    why = (f"over --max-cost ${max_cost:,.2f}" if max_cost is not None and
           estimate.dollars is not None else "with no --max-cost to compare against")
    if not _interactive():
        raise UsageError(f"estimated cost {shown} is {why}, and this is not an interactive "
                         "terminal", fix="pass --yes to accept it, or --max-cost DOLLARS")
    if not typer.confirm(f"Estimated cost {shown} is {why}. Start training?", err=True):
        raise UsageError("training not started", fix="lower --epochs or raise --max-cost")


def _upload(provider: Provider, train: Path, validation: Path | None) -> dict[str, FileRef]:
    refs = {}
    for role, path in (("training_file", train), ("validation_file", validation)):
        if path is None:
            continue
        with err.status(plain(f"Uploading {path.name} to {provider.name}...")):
            ref = provider.upload(path)
        verb = "already uploaded, reusing" if ref.reused else "uploaded"
        err.print(f"✅ {path.name} {verb}: File ID {ref.id}")
        refs[role] = ref
    return refs


def _create(provider: Provider, options: TrainOptions, file: Path, model: str,
            uploads: dict[str, FileRef], estimate: cloud_training.CostEstimate) -> Job:
    validation = uploads.get("validation_file")
    spec = job_spec(options, model, uploads["training_file"].id,
                    validation.id if validation else None)
    local_files = {"training_file": str(file.resolve())}
    if _validation_file(options):
        local_files["validation_file"] = str(_validation_file(options).resolve())
    job = cloud_training.create_and_record(provider, spec, estimate, local_files=local_files)
    err.print(f"✅ Fine-tuning job created on {provider.name}: Job ID {job.id} "
              f"(status {job.status})")
    return job


def _job_summary(provider: Provider, job: Job) -> dict[str, Any]:
    return {"id": job.id, "status": job.status, "native_status": job.native_status,
            "provider": provider.name, "endpoint": provider.base_url,
            "base_model": job.base_model, "fine_tuned_model": job.fine_tuned_model,
            "training_file": job.training_file, "validation_file": job.validation_file,
            "trained_tokens": job.trained_tokens, "error": job.error}


# watch ------------------------------------------------------------------------------------
class _Progress:
    """The live panel: status, step, losses, and the latest line from the provider."""

    def __init__(self, job_id: str) -> None:
        self.job_id, self.status, self.line = job_id, "…", ""
        self.metrics: dict[str, Any] = {}

    def apply(self, update: cloud_training.WatchUpdate) -> None:
        if update.job is None:
            self.line = f"⚠ connection problem for {update.outage_s:.0f}s, retrying: " \
                        f"{update.problem}"
            return
        self.status = update.job.status
        for event in update.events:
            self.metrics.update(cloud_training.metrics_of(event) or {})
            total = (event.data or {}).get("total_steps")  # OpenAI's, outside the vocabulary
            if total:
                self.metrics["total_steps"] = total
            self.line = event.message

    def __rich__(self) -> Table:
        table = Table.grid(padding=(0, 2))
        step = self.metrics.get("step")
        total = self.metrics.get("total_steps")
        losses = [f"{label} {self.metrics[key]:.4f}" for key, label in
                  (("train_loss", "train loss"), ("valid_loss", "valid loss"))
                  if isinstance(self.metrics.get(key), int | float)]
        table.add_row(Text(self.job_id, style="bold"), Text(self.status, style="cyan"),
                      f"step {step}/{total}" if step is not None and total else
                      (f"step {step}" if step is not None else ""), "  ".join(losses))
        table.add_row("", Text(self.line[:120], style="dim"), "", "")
        return table


def follow(provider: Provider, job_id: str, *, interval: float, as_json: bool,
           prompts: str | None = None, timeout: float | None = None) -> int:
    """Watch until done; Ctrl-C detaches. Exit 0 on success, 1 on failure or cancel.
    A --timeout also bounds how long an outage is ridden out."""
    progress = _Progress(job_id)
    err.print(f"⏳ Monitoring {job_id} every {interval:g}s (Ctrl-C detaches; the job "
              "keeps running)")
    last: Job | None = None
    try:
        with Live(progress, console=err, refresh_per_second=4, transient=False):
            for update in cloud_training.watch(
                    provider, job_id, interval=interval,
                    max_outage_s=timeout or cloud_training.MAX_OUTAGE_S):
                if update.job is not None and (last is None or last.status != update.job.status):
                    err.print(f"  status: {update.job.status}", markup=False)
                for event in update.events:
                    err.print(f"  [{event.level}] {event.message}", markup=False)
                progress.apply(update)
                last = update.job or last
    except KeyboardInterrupt:
        err.print(f"Detached from {job_id}; it keeps running on {provider.name}. Reattach: "
                  f"tunelab jobs watch {job_id}")
        return 130
    return _finish(provider, last, as_json=as_json, prompts=prompts)


def _finish(provider: Provider, job: Job | None, *, as_json: bool, prompts: str | None) -> int:
    assert job is not None
    summary = _job_summary(provider, job)
    if job.status == "succeeded":
        err.print(f"✅ Fine-tuning succeeded: {job.fine_tuned_model}")
        if job.fine_tuned_model:
            summary["samples"] = _auto_test(provider, job.fine_tuned_model, prompts)
    else:
        error = job.error or {}
        err.print(f"❌ Job {job.id} ended {job.status}: [{error.get('code') or 'no code'}] "
                  f"{error.get('message') or 'no message from the provider'}", markup=False)
        err.print(f"   What to do: read `tunelab jobs events {job.id}`; if it names the data, "
                  "run `tunelab data check FILE`, fix it and train again.")
    if as_json:
        _emit_json(summary)
    return 0 if job.status == "succeeded" else 1


def _auto_test(provider: Provider, model: str, prompts: str | None) -> list[dict[str, str]]:
    """The seed's auto-test: a few prompts to the new model, answers shown and returned."""
    from tunelab.errors import TunelabError
    from tunelab.evaluate.prompts import load_prompts
    from tunelab.evaluate.runner import Settings

    conversations = load_prompts(Path(prompts) if prompts else None)[:AUTO_TEST_PROMPTS]
    samples = []
    for number, messages in enumerate(conversations, 1):
        prompt = messages[-1]["content"]
        try:
            answer = provider.chat(model, messages, Settings().chat_options()).text
        except TunelabError as error:
            answer = f"(no answer: {error.render()})"
        err.print(f"Test {number}: {prompt}\nResponse: {answer}\n", markup=False)
        samples.append({"prompt": prompt, "answer": answer})
    return samples


# jobs ... for a job on any provider ------------------------------------------------------
def provider_for_job(job_id: str, provider: str | None, base_url: str | None,
                     timeout: float | None = None) -> Provider:
    """The provider a job lives on: from the flags, else from the registry."""
    from tunelab.providers import job_provider
    from tunelab.registry import open_registry

    with open_registry() as registry:
        # Without --provider the job must be known: NotFoundError names `tunelab jobs list`.
        record = registry.find_job(job_id) if provider else registry.get_job(job_id)
    return job_provider(record, with_retries(ProviderSettings(), timeout), name=provider,
                        base_url=base_url)


def watch_remote(job_id: str, *, provider: str | None = None, base_url: str | None = None,
                 interval: float = 60.0, as_json: bool = False,
                 prompts: str | None = None, timeout: float | None = None) -> int:
    """`tunelab jobs watch JOB` for a cloud job (the seed's --monitor)."""
    remote = provider_for_job(job_id, provider, base_url, timeout)
    refresh(remote, job_id)
    return follow(remote, job_id, interval=interval, as_json=as_json, prompts=prompts,
                  timeout=timeout)


CANCEL_OUTCOMES = {
    "requested": "cancel requested: {id} stops after its current step (status {status})",
    "cancelled": "{id} cancelled (status {status})",
    "finished": "{id} had already finished (status {status})",
}


def cancel_job(job_id: str, *, provider: str | None = None, base_url: str | None = None,
               as_json: bool = False, timeout: float | None = None) -> int:
    """`tunelab jobs cancel JOB` on any provider. "result" says what happened: requested (it
    stops after its step), cancelled, or finished (it had ended already; nothing sent)."""
    remote = provider_for_job(job_id, provider, base_url, timeout)
    job, outcome = cloud_training.cancel(remote, job_id)
    if as_json:
        _emit_json({**_job_summary(remote, job), "result": outcome})
    else:
        out.print(CANCEL_OUTCOMES[outcome].format(id=job_id, status=job.status), markup=False)
    return 0


def print_events(job_id: str, *, provider: str | None = None, base_url: str | None = None,
                 as_json: bool = False, timeout: float | None = None) -> int:
    """`tunelab jobs events JOB` on any provider, oldest first."""
    events = provider_for_job(job_id, provider, base_url, timeout).list_events(job_id)
    if as_json:
        _emit_json({"id": job_id, "events": [asdict(event) for event in events]})
        return 0
    for event in events:
        out.print(event_line(event.created_at, event.level, event.message), markup=False)
    return 0


def print_checkpoints(job_id: str, *, provider: str | None = None,
                      base_url: str | None = None, as_json: bool = False,
                      timeout: float | None = None) -> int:
    """A job's checkpoints on any provider: a local run's steps, epochs and latest/best
    pointers, OpenAI's per-epoch checkpoints, Vertex's intermediate ones."""
    rows = provider_for_job(job_id, provider, base_url, timeout).list_checkpoints(job_id)
    if as_json:
        _emit_json({"job": job_id, "checkpoints": [asdict(row) for row in rows]})
        return 0
    if not rows:
        out.print(f"{job_id} has no checkpoints", markup=False)
        return 0
    columns = (Col("name", key=True), Col("kind", drop=4), Col("step", drop=1),
               Col("epoch", drop=5), Col("train loss", drop=3), Col("valid loss", drop=2),
               Col("model / path", key=True, wrap=True, min_width=30))
    cells = [[row.name, row.kind, _cell(row.step), _cell(row.epoch),
              _cell(row.metrics.get(TRAIN_LOSS)), _cell(validation_loss(row.metrics)),
              row.model or row.path or ""] for row in rows]
    out.print(fitted_table(columns, cells, out.width, title=f"checkpoints of {job_id}"))
    return 0


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:g}" if value.is_integer() else f"{value:.4f}"
    return str(value)


def list_remote(provider: str, *, base_url: str | None = None, limit: int = 20,
                timeout: float | None = None, own: Any = None) -> list[dict]:
    """The provider's jobs merged with the registry's: one row per job id, newest first.

    Provider rows are fresher; registry-only rows (older than the provider's page, or on
    another endpoint) are kept so no job id is lost from view.
    """
    from tunelab.providers import get_provider
    from tunelab.registry import open_registry

    remote = get_provider(provider, with_retries(ProviderSettings(base_url=base_url, own=own),
                                                 timeout))
    rows = {job.id: {**_job_summary(remote, job), "created_at": job.created_at,
                     "source": "provider"} for job in remote.list_jobs(limit=limit)}
    with open_registry() as registry:
        records = registry.list_jobs(provider=provider)
        # A job the registry holds under another name (a `tunelab serve` job reached
        # through its API from the same home) is still known: seen in both.
        for job_id, row in rows.items():
            if registry.find_job(job_id) is not None:
                row["source"] = "both"
    for record in records:
        if record.id in rows:
            continue
        rows[record.id] = {"id": record.id, "status": record.status,
                           "provider": record.provider, "endpoint": record.endpoint,
                           "base_model": record.base_model,
                           "fine_tuned_model": record.fine_tuned_model,
                           "created_at": record.created_at, "source": "registry"}
    return sorted(rows.values(), key=lambda row: row.get("created_at") or 0, reverse=True)


def print_remote_list(provider: str, *, base_url: str | None = None, limit: int = 20,
                      as_json: bool = False, timeout: float | None = None,
                      own: Any = None) -> int:
    """`tunelab jobs list --provider P`: the merged list as a table or one JSON object.
    `own`: the provider's own settings (Vertex's project and region)."""
    rows = list_remote(provider, base_url=base_url, limit=limit, timeout=timeout, own=own)
    if as_json:
        _emit_json({"jobs": rows})
        return 0
    columns = (Col("id", key=True), Col("status", drop=1),
               Col("base model", wrap=True, min_width=12, drop=4),
               Col("fine-tuned model", wrap=True, min_width=20, drop=2),
               Col("seen in", drop=3))
    cells = [[row["id"], row["status"], row.get("base_model") or "",
              row.get("fine_tuned_model") or "", row["source"]] for row in rows]
    out.print(fitted_table(columns, cells, out.width,
                           title=f"{provider} jobs (provider + registry)"))
    return 0
