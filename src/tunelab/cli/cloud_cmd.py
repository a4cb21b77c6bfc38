"""Training and watching jobs on a cloud provider: `tunelab train FILE --provider P ...`.

`train_remote(file, options)` is called by `tunelab train` when --provider is not local; the
`*_remote` functions below back `tunelab jobs watch/cancel/events/list` for cloud jobs. All
the work is in tunelab.providers.cloud_training; this module renders it and asks the questions.
Progress goes to stderr, so that with --json stdout holds exactly one JSON object.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from tunelab.errors import UsageError
from tunelab.providers import cloud_training
from tunelab.providers.base import Job, Provider

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
PROVIDER_SETTINGS = ("project_id", "bucket", "location")  # vertex-only flags
AUTO_TEST_PROMPTS = 5
AUTO_TEST_MAX_TOKENS = 96  # as the local trainer's samples.json: enough to judge the style


def _emit_json(payload: dict[str, Any]) -> None:
    print(json.dumps(payload, ensure_ascii=False, default=str))


def _interactive() -> bool:
    return sys.stdin.isatty() and not os.environ.get("CI")


def _provider(options: dict[str, Any]) -> Provider:
    from tunelab.providers import get_provider

    settings = {key: options[key] for key in PROVIDER_SETTINGS if options.get(key)}
    return get_provider(options["provider"], base_url=options.get("base_url"), **settings)


# train ------------------------------------------------------------------------------------
def train_remote(file: Path, options: dict[str, Any]) -> int:
    """The cloud path of `tunelab train`; returns the exit code."""
    from tunelab.data.pricing import default_model

    options = {**options, "json": bool(options.get("json") or options.get("json_out"))}
    name = options["provider"]
    cloud_training.require_fine_tuning(name)
    model = options.get("model") or default_model(name)
    report = cloud_training.check_data(Path(file), provider=name, model=model,
                                    epochs=options.get("epochs"))
    validation = options.get("validation_file")
    if validation:
        cloud_training.check_data(Path(validation), provider=name, model=model,
                               epochs=options.get("epochs"), role="--validation-file")
    estimate = cloud_training.estimate_cost(report, provider=name, model=model,
                                         epochs=options.get("epochs"))
    _show_check(report, estimate, as_json=options.get("json"))
    if options.get("validate_only") or options.get("dry_run"):
        return _checked_only(options, report, estimate, Path(file), model)
    provider = _provider(options)
    _confirm_cost(estimate, options)
    uploads = _upload(provider, Path(file), Path(validation) if validation else None)
    if options.get("upload_only"):
        if options.get("json"):
            _emit_json({"files": {role: ref.__dict__ for role, ref in uploads.items()}})
        return 0
    job = _create(provider, options, model, uploads, file, validation, estimate)
    if options.get("no_wait"):
        err.print(f"Not waiting. Follow it with: tunelab jobs watch {job.id}")
        if options.get("json"):
            _emit_json(_job_summary(provider, job))
        return 0
    return follow(provider, job.id, interval=options.get("interval") or 60.0,
                  as_json=bool(options.get("json")), prompts=options.get("prompts"))


def _checked_only(options: dict[str, Any], report: Any, estimate: cloud_training.CostEstimate,
                  file: Path, model: str) -> int:
    """--validate-only, and --dry-run: what would be sent, with nothing uploaded or created."""
    payload: dict[str, Any] = {"ok": True, "examples": report.valid_examples,
                               "cost": estimate.as_dict()}
    if options.get("dry_run"):
        validation = "<validation file id>" if options.get("validation_file") else None
        spec = cloud_training.spec_from_options(options, "<training file id>", validation, model)
        description = _provider(options).describe_request(file, spec)  # type: ignore[attr-defined]
        payload = {**description, **payload}
        err.print("Dry run: nothing was uploaded and no job was created.")
        if not options.get("json"):
            out.print(json.dumps(description, indent=2, ensure_ascii=False), markup=False)
    if options.get("json"):
        _emit_json(payload)
    return 0


def _show_check(report: Any, estimate: cloud_training.CostEstimate, *, as_json: bool) -> None:
    err.print(f"✅ Validation passed: {report.valid_examples} training examples")
    if report.warnings.total:
        err.print(f"   {report.warnings.total} warning(s): run `tunelab data check` to see them")
    price = "unknown (no training price for this model)" if estimate.dollars is None \
        else f"${estimate.dollars:,.2f}"
    err.print(f"💰 Estimated training cost on {estimate.provider} {estimate.model}: {price} "
              f"({estimate.billed_tokens:,} tokens × {estimate.epochs} epochs)")


def _confirm_cost(estimate: cloud_training.CostEstimate, options: dict[str, Any]) -> None:
    max_cost = options.get("max_cost")
    if options.get("yes") or not cloud_training.needs_confirmation(estimate, max_cost):
        return
    shown = "unknown" if estimate.dollars is None else f"${estimate.dollars:,.2f}"
    why = (f"over --max-cost ${max_cost:,.2f}" if max_cost is not None and
           estimate.dollars is not None else "with no --max-cost to compare against")
    if not _interactive():
        raise UsageError(f"estimated cost {shown} is {why}, and this is not an interactive "
                         "terminal", fix="pass --yes to accept it, or --max-cost DOLLARS")
    if not typer.confirm(f"Estimated cost {shown} is {why}. Start training?", err=True):
        raise UsageError("training not started", fix="lower --epochs or raise --max-cost")


def _upload(provider: Provider, train: Path, validation: Path | None) -> dict[str, Any]:
    refs = {}
    for role, path in (("training_file", train), ("validation_file", validation)):
        if path is None:
            continue
        with err.status(f"Uploading {path.name} to {provider.name}..."):
            ref = provider.upload(path)
        verb = "already uploaded, reusing" if ref.reused else "uploaded"
        err.print(f"✅ {path.name} {verb}: File ID {ref.id}")
        refs[role] = ref
    return refs


def _create(provider: Provider, options: dict[str, Any], model: str, uploads: dict[str, Any],
            file: Path, validation: str | None, estimate: cloud_training.CostEstimate) -> Job:
    val_ref = uploads.get("validation_file")
    spec = cloud_training.spec_from_options(options, uploads["training_file"].id,
                                         val_ref.id if val_ref else None, model)
    job = provider.create_job(spec)
    local_files = {"training_file": str(Path(file).resolve())}
    if validation:
        local_files["validation_file"] = str(Path(validation).resolve())
    config = {"hyperparameters": {"n_epochs": spec.epochs, "learning_rate": spec.learning_rate,
                                  "batch_size": spec.batch_size},
              "seed": spec.seed, "estimated_cost": estimate.as_dict()}
    cloud_training.record_job(provider, job, local_files=local_files, config=config)
    err.print(f"✅ Fine-tuning job created on {provider.name}: Job ID {job.id} "
              f"(status {job.status})")
    return job


def _job_summary(provider: Provider, job: Job) -> dict[str, Any]:
    return {"id": job.id, "status": job.status, "native_status": job.native_status,
            "provider": provider.name, "endpoint": getattr(provider, "base_url", None),
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
           prompts: str | None = None) -> int:
    """Watch until done; Ctrl-C detaches. Exit 0 on success, 1 on failure or cancel."""
    progress = _Progress(job_id)
    err.print(f"⏳ Monitoring {job_id} every {interval:g}s (Ctrl-C detaches; the job "
              "keeps running)")
    last: Job | None = None
    try:
        with Live(progress, console=err, refresh_per_second=4, transient=False):
            for update in cloud_training.watch(provider, job_id, interval=interval):
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

    conversations = load_prompts(Path(prompts) if prompts else None)[:AUTO_TEST_PROMPTS]
    samples = []
    for number, messages in enumerate(conversations, 1):
        prompt = messages[-1]["content"]
        try:
            answer = provider.chat(model, messages, max_tokens=AUTO_TEST_MAX_TOKENS,
                                   temperature=0.7).text
        except TunelabError as error:
            answer = f"(no answer: {error.render()})"
        err.print(f"Test {number}: {prompt}\nResponse: {answer}\n", markup=False)
        samples.append({"prompt": prompt, "answer": answer})
    return samples


# jobs ... for cloud jobs ------------------------------------------------------------------
def provider_for_job(job_id: str, provider: str | None, base_url: str | None) -> Provider:
    """The provider a job lives on: from the flags, else from the registry."""
    from tunelab.providers import get_provider
    from tunelab.registry import open_registry

    registry = open_registry()
    try:
        record = registry.find_job(job_id)
    finally:
        registry.close()
    name = provider or (record.provider if record else None)
    if name is None:
        raise UsageError(f"job {job_id} is not in the registry and no --provider was given",
                         fix=f"tunelab jobs watch {job_id} --provider openai")
    return get_provider(name, base_url=base_url or (record.endpoint if record else None))


def _ensure_recorded(provider: Provider, job_id: str) -> Job:
    job = provider.get_job(job_id)
    cloud_training.record_job(provider, job, local_files={}, config={})
    return job


def watch_remote(job_id: str, *, provider: str | None = None, base_url: str | None = None,
                 interval: float = 60.0, as_json: bool = False,
                 prompts: str | None = None) -> int:
    """`tunelab jobs watch JOB` for a cloud job (the seed's --monitor)."""
    remote = provider_for_job(job_id, provider, base_url)
    _ensure_recorded(remote, job_id)
    return follow(remote, job_id, interval=interval, as_json=as_json, prompts=prompts)


def cancel_remote(job_id: str, *, provider: str | None = None, base_url: str | None = None,
                  as_json: bool = False) -> int:
    remote = provider_for_job(job_id, provider, base_url)
    job = remote.cancel(job_id)
    cloud_training.record_job(remote, job, local_files={}, config={})
    if as_json:
        _emit_json(_job_summary(remote, job))
    else:
        out.print(f"Cancel requested for {job_id}: status {job.status}")
    return 0


def events_remote(job_id: str, *, provider: str | None = None, base_url: str | None = None,
                  as_json: bool = False) -> int:
    remote = provider_for_job(job_id, provider, base_url)
    events = remote.list_events(job_id)
    if as_json:
        _emit_json({"id": job_id, "events": [event.__dict__ for event in events]})
        return 0
    for event in events:
        out.print(f"{event.created_at:.0f} [{event.level}] {event.message}", markup=False)
    return 0


def list_remote(provider: str, *, base_url: str | None = None, limit: int = 20) -> list[dict]:
    """The provider's jobs merged with the registry's: one row per job id, newest first.

    Provider rows are fresher; registry-only rows (older than the provider's page, or on
    another endpoint) are kept so no job id is lost from view.
    """
    from tunelab.providers import get_provider
    from tunelab.registry import open_registry

    remote = get_provider(provider, base_url=base_url)
    rows = {job.id: {**_job_summary(remote, job), "created_at": job.created_at,
                     "source": "provider"} for job in remote.list_jobs(limit=limit)}
    registry = open_registry()
    try:
        for record in registry.list_jobs(provider=provider):
            row = rows.get(record.id)
            if row is not None:
                row["source"] = "both"
                continue
            rows[record.id] = {"id": record.id, "status": record.status,
                               "provider": record.provider, "endpoint": record.endpoint,
                               "base_model": record.base_model,
                               "fine_tuned_model": record.fine_tuned_model,
                               "created_at": record.created_at, "source": "registry"}
    finally:
        registry.close()
    return sorted(rows.values(), key=lambda row: row.get("created_at") or 0, reverse=True)


def print_remote_list(provider: str, *, base_url: str | None = None, limit: int = 20,
                      as_json: bool = False) -> int:
    """`tunelab jobs list --provider P`: the merged list as a table or one JSON object."""
    rows = list_remote(provider, base_url=base_url, limit=limit)
    if as_json:
        _emit_json({"jobs": rows})
        return 0
    table = Table(title=f"{provider} jobs (provider + registry)")
    for column in ("id", "status", "base model", "fine-tuned model", "seen in"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["id"], row["status"], row.get("base_model") or "",
                      row.get("fine_tuned_model") or "", row["source"])
    out.print(table)
    return 0


def checkpoints_remote(job_id: str, *, provider: str | None = None,
                       base_url: str | None = None, as_json: bool = False) -> int:
    """A cloud job's checkpoints (OpenAI's fine_tuning.job.checkpoint objects)."""
    remote = provider_for_job(job_id, provider, base_url)
    lister = getattr(remote, "list_checkpoints", None)
    if lister is None:
        raise UsageError(f"{remote.name} does not list checkpoints",
                         fix=f"see `tunelab jobs events {job_id}`")
    rows = lister(job_id)
    if as_json:
        _emit_json({"job": job_id, "checkpoints": rows})
        return 0
    for row in rows:
        metrics = row.get("metrics") or {}
        out.print(f"step {row.get('step_number')}: {row.get('fine_tuned_model_checkpoint')} "
                  f"train loss {metrics.get('train_loss')} valid loss "
                  f"{metrics.get('valid_loss')}", markup=False)
    return 0
