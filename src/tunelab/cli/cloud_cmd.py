"""The job commands every provider shares, and following a cloud job to its end.

The functions below (`follow`, `cancel_job`, `print_events`, `print_checkpoints`, the list)
back `tunelab jobs ...` for a job on any provider, the local one included, through the
provider contract; a cancel goes through the door (tunelab.runs). `follow` also ends
`tunelab train --provider P`. Progress goes to stderr, so that with --json stdout holds
exactly one JSON object.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from rich.live import Live
from rich.table import Table
from rich.text import Text

from tunelab.cli.console import emit_json, err, out
from tunelab.cli.formatting import Col, event_line, fitted_table, terminal_safe
from tunelab.errors import UsageError, command
from tunelab.providers import cloud_training
from tunelab.providers.base import (
    Job,
    Provider,
    ProviderSettings,
)
from tunelab.providers.cloud_training import refresh
from tunelab.providers.retry import RetryNotice, RetryPolicy
from tunelab.registry import JobRecord
from tunelab.registry.metrics import TRAIN_LOSS, TRAINED_TOKENS, validation_loss

AUTO_TEST_PROMPTS = 5


def _show_retry(notice: RetryNotice) -> None:
    err.print(f"↻ {notice.render()}", markup=False)


def with_retries(settings: ProviderSettings, timeout: float | None) -> ProviderSettings:
    """`settings` with --timeout, and each retry shown on stderr as it happens."""
    if timeout is not None and not timeout > 0:
        raise UsageError(f"--timeout {timeout:g} must be more than 0 seconds",
                         fix="pass e.g. --timeout 60")
    return replace(settings, retry=RetryPolicy(timeout=timeout, on_retry=_show_retry))


def _job_summary(provider: Provider, job: Job) -> dict[str, Any]:
    return {"id": job.id, "status": job.status, "native_status": job.native_status,
            "provider": provider.name, "endpoint": provider.base_url,
            "base_model": job.base_model, "fine_tuned_model": job.fine_tuned_model,
            "training_file": job.training_file, "validation_file": job.validation_file,
            "trained_tokens": job.trained_tokens, "error": job.error}


def record_summary(job: JobRecord) -> dict[str, Any]:
    """The same summary from the registry's row (a job just created and recorded)."""
    return {"id": job.id, "status": job.status, "native_status": job.native_status,
            "provider": job.provider, "endpoint": job.endpoint, "base_model": job.base_model,
            "fine_tuned_model": job.fine_tuned_model, "training_file": job.training_file,
            "validation_file": job.validation_file,
            "trained_tokens": job.metrics.get(TRAINED_TOKENS), "error": job.error}


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
        # A live display is drawn outside the consoles' escaping: its outside text is made
        # safe here (the provider's status and event line).
        table.add_row(Text(self.job_id, style="bold"),
                      Text(terminal_safe(self.status), style="cyan"),
                      f"step {step}/{total}" if step is not None and total else
                      (f"step {step}" if step is not None else ""), "  ".join(losses))
        table.add_row("", Text(terminal_safe(self.line[:120], newlines=False), style="dim"),
                      "", "")
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
                  + command("tunelab", "jobs", "watch", job_id))
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
        err.print(f"   What to do: read `{command('tunelab', 'jobs', 'events', job.id)}`; if "
                  "it names the data, "
                  "run `tunelab data check FILE`, fix it and train again.")
    if as_json:
        emit_json(summary)
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
    """`tunelab jobs cancel JOB` on any provider, through the door. "result" says what
    happened: requested (a live run stops after its step), cancelled, or finished (it had
    ended already; nothing sent)."""
    from tunelab import runs

    settings = with_retries(ProviderSettings(base_url=base_url), timeout)
    job, outcome = runs.cancel(job_id, provider=provider, settings=settings)
    if as_json:
        emit_json({**_job_summary(provider_for_job(job_id, provider, base_url, timeout), job),
                   "result": outcome})
    else:
        out.print(CANCEL_OUTCOMES[outcome].format(id=job_id, status=job.status), markup=False)
    return 0


def print_events(job_id: str, *, provider: str | None = None, base_url: str | None = None,
                 as_json: bool = False, timeout: float | None = None) -> int:
    """`tunelab jobs events JOB` on any provider, oldest first."""
    events = provider_for_job(job_id, provider, base_url, timeout).list_events(job_id)
    if as_json:
        emit_json({"id": job_id, "events": [asdict(event) for event in events]})
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
        emit_json({"job": job_id, "checkpoints": [asdict(row) for row in rows]})
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
        emit_json({"jobs": rows})
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
