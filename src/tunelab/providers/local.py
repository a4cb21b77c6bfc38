"""The `local` provider: the provider contract over the local trainer, the registry and
local inference.

`create_job` runs a job on this machine through tunelab.local.orchestrator, which records it
in the registry as it goes; get_job/list_jobs/list_events/list_checkpoints read the registry;
cancel asks a live run to checkpoint and stop; chat answers with the base model or a run's
weights on this machine.
"""

from __future__ import annotations

import hashlib
import shutil
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab import home
from tunelab.errors import NotFoundError, UsageError
from tunelab.providers.base import (
    Capabilities,
    ChatOptions,
    Checkpoint,
    FileRef,
    Job,
    JobSpec,
    ProviderEvent,
    ProviderSettings,
    Reply,
    no_weights,
)
from tunelab.registry import JobRecord, open_registry
from tunelab.registry.metrics import TRAINED_TOKENS

if TYPE_CHECKING:
    from tunelab.config import TrainConfig
    from tunelab.local.recorder import EventHandler

NAME = "local"
RUNS_PLACEHOLDER = "TUNELAB_HOME/runs/<job id>"


def _job(record: JobRecord) -> Job:
    return Job(id=record.id, status=record.status, base_model=record.base_model or "",
               native_status=record.native_status, fine_tuned_model=record.fine_tuned_model,
               created_at=record.created_at, finished_at=record.finished_at,
               training_file=record.training_file, validation_file=record.validation_file,
               suffix=record.suffix, trained_tokens=record.metrics.get(TRAINED_TOKENS),
               error=record.error, raw={"run_dir": record.run_dir, "metrics": record.metrics})


def train_config(spec: JobSpec) -> TrainConfig:
    """The run config for `spec`: the one it carries (the CLI resolved preset < config file
    < flags), else the defaults with the spec's fields applied."""
    if spec.config is not None:
        return spec.config
    from tunelab.config import resolve_config

    flags = {"model": spec.base_model or None, "train_file": spec.training_file,
             "validation_file": spec.validation_file, "suffix": spec.suffix,
             "epochs": spec.epochs, "learning_rate": spec.learning_rate,
             "batch_size": spec.batch_size, "seed": spec.seed}
    return resolve_config(flags={key: value for key, value in flags.items()
                                 if value is not None})


class LocalProvider:
    """Training, history and chat on this machine.

    `create_job` runs the job to its end in the calling thread and returns it finished. A
    local job is this machine's own CPU/GPU, not a remote service to poll, and running it
    where it was asked lets the caller see it live: the trainer's events go straight to
    `on_event` (the CLI's progress bar, a server worker's event log), Ctrl-C keeps meaning
    "checkpoint and stop" (Python delivers signals to the main thread only), and `stop` is
    the same switch for a worker thread. The job is in the registry, queued, before the model
    loads, so `tunelab jobs watch/events/cancel` in another process see it at once.
    """

    name = NAME
    capabilities = Capabilities(fine_tuning=True, chat=True, files=True, checkpoints=True,
                                mirrored=False, methods=frozenset({"supervised", "dpo"}))
    base_url: str | None = None  # no API: jobs run in this process

    def __init__(self, *, on_event: EventHandler | None = None,
                 stop: threading.Event | None = None) -> None:
        self._on_event = on_event
        self._stop = stop

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
        with open_registry() as registry:
            registry.record_file(file_id=file_id, provider=NAME, endpoint=NAME, sha256=sha,
                                 filename=path.name, size=target.stat().st_size,
                                 purpose="fine-tune")
        return FileRef(file_id, path.name, target.stat().st_size, sha, reused=reused)

    def describe_request(self, spec: JobSpec) -> dict[str, Any]:
        """The resolved TrainConfig the run would use, checked (its files exist); runs nothing."""
        from tunelab.local.prepare import check_config

        config = train_config(spec)
        check_config(config)
        return {"provider": NAME, "run_dir": config.output_dir or RUNS_PLACEHOLDER,
                "config": config.model_dump(mode="json")}

    def create_job(self, spec: JobSpec) -> Job:
        """Train `spec` here and return the finished job; its `raw` is the run's result
        object (what `tunelab train --json` prints)."""
        from tunelab.local import orchestrator

        result = orchestrator.train(train_config(spec), on_event=self._on_event,
                                    stop=self._stop, metadata=spec.metadata)
        if result["id"] is None:  # a rank other than 0 under accelerate launch: no job row
            return Job(id="", status=result["status"], base_model=spec.base_model, raw=result)
        return replace(self.get_job(result["id"]), raw=result)

    def get_job(self, job_id: str) -> Job:
        return _job(self._record(job_id))

    def list_jobs(self, limit: int = 20) -> list[Job]:
        with open_registry() as registry:
            return [_job(record) for record in registry.list_jobs(provider=NAME, limit=limit)]

    def list_events(self, job_id: str, after: str | None = None) -> list[ProviderEvent]:
        self._record(job_id)
        with open_registry() as registry:
            events = registry.list_events(job_id, after=int(after or 0))
        return [ProviderEvent(str(event.seq), event.created_at, event.message, event.level,
                              event.type, event.data) for event in events]

    def list_checkpoints(self, job_id: str) -> list[Checkpoint]:
        """Per step and epoch, and the `latest`/`best` pointers, as the trainer recorded them."""
        self._record(job_id)
        with open_registry() as registry:
            rows = registry.list_checkpoints(job_id)
        return [Checkpoint(job_id=row.job_id, name=row.name, kind=row.kind,
                           created_at=row.created_at, step=row.step, epoch=row.epoch,
                           path=row.path, metrics=dict(row.metrics)) for row in rows]

    def cancel(self, job_id: str) -> Job:
        """A live run finishes its step, checkpoints and stops (and can resume with
        `tunelab train --resume`); a job no process runs is marked cancelled; a finished
        one is left as it is."""
        from tunelab.local import orchestrator

        self._record(job_id)
        orchestrator.request_cancel(job_id)
        return self.get_job(job_id)

    def chat(self, model: str, messages: list[dict[str, Any]],
             options: ChatOptions = ChatOptions()) -> Reply:
        """Answer with a local base model, a local job (id or `ft:` name) or a weights folder."""
        from tunelab.local.inference import load_chat_model

        chat_model = load_chat_model(model)  # tunelab.local.weights resolves the name
        started = time.perf_counter()
        completion = chat_model.complete(  # None: the model's default (local/generation.py)
            messages, max_new_tokens=options.max_tokens, temperature=options.temperature,
            top_p=options.top_p, seed=options.seed,
            repetition_penalty=options.repetition_penalty)
        return Reply(text=completion.text, model=model,
                     latency_s=time.perf_counter() - started,
                     prompt_tokens=completion.prompt_tokens,
                     completion_tokens=completion.completion_tokens)

    def download_weights(self, job_id: str, kind: str, dest: Path) -> Path:
        raise no_weights(self.name)  # its adapter is on this machine already

    def _record(self, job_id: str) -> JobRecord:
        with open_registry() as registry:
            record = registry.get_job(job_id)
        if record.provider != NAME:
            raise NotFoundError(f"job {job_id} belongs to provider {record.provider!r}, "
                                "not local", fix=f"use --provider {record.provider}")
        return record


def build(settings: ProviderSettings) -> LocalProvider:
    """The PROVIDERS factory for `local` (other providers' settings do not apply)."""
    if settings.base_url:
        raise UsageError("--base-url does not apply to the local provider",
                         fix="drop --base-url, or name an OpenAI-compatible provider")
    return LocalProvider()
