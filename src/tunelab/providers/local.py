"""The `local` provider: the provider contract over the registry and local inference.

Local jobs are run by `tunelab train` (the trainer records them in the registry as it goes),
so here get_job/list_jobs/list_events read the registry, cancel marks the job there, and
chat answers with the base model or a run's LoRA adapter on this machine.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tunelab import home
from tunelab.errors import NotFoundError, UsageError
from tunelab.providers.base import Capabilities, FileRef, Job, JobSpec, ProviderEvent, Reply
from tunelab.registry import JobRecord, Registry, open_registry

NAME = "local"


@contextmanager
def _registry() -> Iterator[Registry]:
    registry = open_registry()
    try:
        yield registry
    finally:
        registry.close()


def _job(record: JobRecord) -> Job:
    return Job(id=record.id, status=record.status, base_model=record.base_model or "",
               native_status=record.native_status, fine_tuned_model=record.fine_tuned_model,
               created_at=record.created_at, finished_at=record.finished_at,
               training_file=record.training_file, validation_file=record.validation_file,
               suffix=record.suffix, error=record.error,
               raw={"run_dir": record.run_dir, "metrics": record.metrics})


def _live_trainer(record: JobRecord) -> int | None:
    """The pid in the run's train.pid if that process still exists."""
    try:
        pid = int((Path(record.run_dir or "") / "train.pid").read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


class LocalProvider:
    name = NAME
    capabilities = Capabilities(fine_tuning=True, chat=True, files=True)

    def upload(self, path: Path) -> FileRef:
        """Copy the dataset into TUNELAB_HOME/files, named by content, so runs can refer to it
        after the original moves."""
        path = Path(path)
        if not path.is_file():
            raise UsageError(f"{path}: no such file", fix="pass an existing dataset file")
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        file_id = f"file-local-{sha[:24]}"
        target = home.home() / "files" / f"{file_id}{path.suffix}"
        reused = target.is_file()
        if not reused:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        with _registry() as registry:
            registry.record_file(file_id=file_id, provider=NAME, endpoint=NAME, sha256=sha,
                                 filename=path.name, size=target.stat().st_size,
                                 purpose="fine-tune")
        return FileRef(file_id, path.name, target.stat().st_size, sha, reused=reused)

    def create_job(self, spec: JobSpec) -> Job:
        raise UsageError("local jobs run in this process, not through the provider API",
                         fix="start one with `tunelab train --provider local`")

    def get_job(self, job_id: str) -> Job:
        return _job(self._record(job_id))

    def list_jobs(self, limit: int = 20) -> list[Job]:
        with _registry() as registry:
            return [_job(record) for record in registry.list_jobs(provider=NAME, limit=limit)]

    def list_events(self, job_id: str, after: str | None = None) -> list[ProviderEvent]:
        self._record(job_id)
        with _registry() as registry:
            events = registry.list_events(job_id, after=int(after or 0))
        return [ProviderEvent(str(event.seq), event.created_at, event.message, event.level,
                              event.type, event.data) for event in events]

    def cancel(self, job_id: str) -> Job:
        """Mark a local job that no process runs any more as cancelled.

        A live run is stopped where it runs (Ctrl-C, or the server's cancel), so that it
        finishes its step and checkpoints; signalling it from here could hit a server
        process that hosts it, so we name the way instead.
        """
        record = self._record(job_id)
        if record.is_terminal:
            return _job(record)
        pid = _live_trainer(record)
        if pid is not None:
            raise UsageError(f"job {job_id} is training in process {pid}",
                             fix="press Ctrl-C in its terminal (it checkpoints and can resume "
                                 f"with `tunelab train --resume {job_id}`)")
        with _registry() as registry:
            registry.add_event(job_id, "cancelled: no process was running it", level="warning")
            return _job(registry.update_job(job_id, status="cancelled"))

    def chat(self, model: str, messages: list[dict[str, Any]], **options: Any) -> Reply:
        """Answer with a local base model, a local job (id or `ft:` name) or an adapter folder.

        Takes OpenAI's option names (max_tokens, temperature, top_p, seed) or max_new_tokens.
        """
        from tunelab.local.inference import load_chat_model

        chat_model = load_chat_model(model)  # tunelab.local.weights resolves the name
        max_new_tokens = options.get("max_new_tokens") or options.get("max_tokens") or 256
        started = time.perf_counter()
        completion = chat_model.complete(
            messages, max_new_tokens=int(max_new_tokens),
            temperature=float(options.get("temperature") or 0.0),
            top_p=float(options.get("top_p") or 1.0), seed=int(options.get("seed") or 0))
        return Reply(text=completion.text, model=model,
                     latency_s=time.perf_counter() - started,
                     prompt_tokens=completion.prompt_tokens,
                     completion_tokens=completion.completion_tokens)

    def _record(self, job_id: str) -> JobRecord:
        with _registry() as registry:
            record = registry.get_job(job_id)
        if record.provider != NAME:
            raise NotFoundError(f"job {job_id} belongs to provider {record.provider!r}, "
                                "not local", fix=f"use --provider {record.provider}")
        return record


def build(*, base_url: str | None = None, **_settings: object) -> LocalProvider:
    """The PROVIDERS factory for `local` (other providers' settings do not apply)."""
    if base_url:
        raise UsageError("--base-url does not apply to the local provider",
                         fix="drop --base-url, or name an OpenAI-compatible provider")
    return LocalProvider()
