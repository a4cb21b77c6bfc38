"""The provider for every OpenAI-compatible endpoint (OpenAI, Kimi, `tunelab serve`, others).

One class, configured by a Profile (tunelab.providers.profiles). It speaks through the official
`openai` SDK; tunelab.providers.sdk_errors turns the SDK's errors into tunelab's, keeping only
the provider's code and message, with the key scrubbed out.

Two calls create something and must happen exactly once: the upload and the job create. The
SDK would retry them blindly after a timeout or a dropped answer, leaving two files or two
jobs; so they are sent without SDK retries, and after an ambiguous failure we first look for
what the lost call may have created (a file by its name, which carries the content hash; a
job by the client token in its metadata) before sending again.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import openai
from openai.types import FileObject
from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent
from openai.types.fine_tuning.jobs import FineTuningJobCheckpoint

from tunelab.errors import NotFoundError, TransientProviderError
from tunelab.home import cache_dir
from tunelab.providers.base import (
    ChatOptions,
    Checkpoint,
    FileRef,
    Job,
    JobSpec,
    ProviderEvent,
    Reply,
)
from tunelab.providers.profiles import Profile, no_fine_tuning, resolve_key
from tunelab.providers.sdk_errors import from_openai
from tunelab.registry import open_registry
from tunelab.registry.metrics import step_metrics

TOKEN_KEY = "tunelab_token"  # metadata key that makes a job create idempotent
T = TypeVar("T")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _backoff(attempt: int) -> float:
    return min(30.0, 0.5 * 2 ** attempt)


def _job_from_sdk(job: FineTuningJob) -> Job:
    raw = job.model_dump(mode="json")
    status = raw.get("status") or "unknown"
    return Job(id=raw["id"], status=status, native_status=status,
               base_model=raw.get("model") or "", fine_tuned_model=raw.get("fine_tuned_model"),
               created_at=raw.get("created_at"), finished_at=raw.get("finished_at"),
               training_file=raw.get("training_file"),
               validation_file=raw.get("validation_file"), suffix=_suffix_of(raw),
               trained_tokens=raw.get("trained_tokens"), error=raw.get("error") or None, raw=raw)


def _suffix_of(raw: dict[str, Any]) -> str | None:
    # OpenAI's job object has no suffix field; it shows up inside fine_tuned_model and, for
    # jobs we created, in the metadata.
    return raw.get("suffix") or (raw.get("metadata") or {}).get("tunelab_suffix")


def _event_from_sdk(event: FineTuningJobEvent) -> ProviderEvent:
    raw = event.model_dump(mode="json")
    return ProviderEvent(id=raw["id"], created_at=float(raw.get("created_at") or 0),
                         message=raw.get("message") or "", level=raw.get("level") or "info",
                         type=raw.get("type") or "message", data=raw.get("data"))


def _checkpoint_from_sdk(
        checkpoint: FineTuningJobCheckpoint) -> Checkpoint:
    metrics = checkpoint.metrics.model_dump(mode="json", exclude_none=True)
    return Checkpoint(job_id=checkpoint.fine_tuning_job_id, name=checkpoint.id, kind="step",
                      created_at=float(checkpoint.created_at), step=checkpoint.step_number,
                      metrics=step_metrics(metrics),
                      model=checkpoint.fine_tuned_model_checkpoint)


def hyperparameters(spec: JobSpec) -> dict[str, Any]:
    values = {"n_epochs": spec.epochs, "learning_rate_multiplier": spec.learning_rate,
              "batch_size": spec.batch_size}
    return {name: value for name, value in values.items() if value is not None}


def as_jsonl(path: Path) -> Path:
    """`path` itself if it is JSONL; else a JSONL copy (fine-tuning APIs take only JSONL),
    kept in the cache under a name derived from the source's hash so reruns reuse it."""
    if path.suffix.lower() == ".jsonl":
        return path
    from tunelab.data.reader import load_examples

    target = cache_dir() / "uploads" / f"{path.stem}.{file_sha256(path)[:16]}.jsonl"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".part")
        with partial.open("w", encoding="utf-8") as out:
            for example in load_examples(path):
                out.write(json.dumps(example, ensure_ascii=False) + "\n")
        partial.replace(target)
    return target


def job_request_body(spec: JobSpec, token: str) -> dict[str, Any]:
    """The JSON body of POST /fine_tuning/jobs, hyperparameters under method.supervised."""
    metadata = {**spec.metadata, TOKEN_KEY: token}
    if spec.suffix:
        metadata["tunelab_suffix"] = spec.suffix
    body: dict[str, Any] = {
        "model": spec.base_model, "training_file": spec.training_file,
        "method": {"type": "supervised",
                   "supervised": {"hyperparameters": hyperparameters(spec)}},
        "metadata": metadata,
    }
    optional = {"validation_file": spec.validation_file, "suffix": spec.suffix,
                "seed": spec.seed}
    body.update({name: value for name, value in optional.items() if value is not None})
    return body


def _upload_plan(path: Path) -> dict[str, Any]:
    sent = as_jsonl(path)
    return {"file": str(path), "bytes": sent.stat().st_size, "sha256": file_sha256(sent),
            "purpose": "fine-tune"}


class OpenAICompatProvider:
    """An OpenAI-compatible endpoint. `base_url` overrides the profile's."""

    def __init__(self, profile: Profile, *, base_url: str | None = None,
                 max_retries: int = 5, timeout: float = 120.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.profile = profile
        self.name = profile.name
        self.capabilities = profile.capabilities
        self.base_url = (base_url or profile.base_url).rstrip("/")
        self._key = resolve_key(profile)
        self._client = openai.OpenAI(api_key=self._key, base_url=self.base_url,
                                     max_retries=max_retries, timeout=timeout)
        # Calls that create something: no blind SDK retries (see the module docstring).
        self._once = self._client.with_options(max_retries=0)
        self._sleep = sleep
        self.create_attempts = 8

    def __repr__(self) -> str:  # never show the client (it holds the key)
        return f"OpenAICompatProvider({self.name!r}, base_url={self.base_url!r})"

    # plumbing -------------------------------------------------------------------------
    def _call(self, send: Callable[[], T]) -> T:
        try:
            return send()
        except openai.APIError as error:
            raise from_openai(error, provider=self.name, key=self._key) from None

    def _exactly_once(self, send: Callable[[], T], find: Callable[[], T | None]) -> T:
        """Send a create; after an ambiguous failure, adopt what it made instead of resending."""
        for attempt in range(self.create_attempts):
            try:
                return self._call(send)
            except TransientProviderError as error:
                if attempt == self.create_attempts - 1:
                    raise
                wait = error.retry_after
            found = self._find_patiently(find)
            if found is not None:
                return found
            self._sleep(wait if wait is not None else _backoff(attempt))
        raise AssertionError("unreachable")

    def _find_patiently(self, find: Callable[[], T | None]) -> T | None:
        """Run a lookup until it answers: resending before we know would risk a duplicate."""
        for attempt in range(self.create_attempts):
            try:
                return self._call(find)
            except TransientProviderError:
                if attempt == self.create_attempts - 1:
                    raise
            self._sleep(_backoff(attempt))
        raise AssertionError("unreachable")

    # files ------------------------------------------------------------------------------
    def upload(self, path: Path) -> FileRef:
        """Upload for fine-tuning, unless this endpoint already holds the same bytes."""
        path = as_jsonl(path)
        sha = file_sha256(path)
        size = path.stat().st_size
        reused = self._reuse_upload(sha)
        if reused is not None:
            return reused
        # The remote name carries the hash, so a lost upload can be recognised by it.
        remote_name = f"{path.stem}.{sha[:16]}{path.suffix}"

        def send() -> FileObject:
            with path.open("rb") as handle:
                return self._once.files.create(file=(remote_name, handle), purpose="fine-tune")

        created = self._exactly_once(send, lambda: self._find_file(remote_name, size))
        with open_registry() as registry:
            registry.record_file(file_id=created.id, provider=self.name, endpoint=self.base_url,
                                 sha256=sha, filename=path.name, size=size, purpose="fine-tune")
        return FileRef(id=created.id, filename=remote_name, bytes=size, sha256=sha)

    def _reuse_upload(self, sha: str) -> FileRef | None:
        with open_registry() as registry:
            for file_id in registry.files_with_sha(self.base_url, sha):
                try:
                    remote = self._call(lambda fid=file_id: self._client.files.retrieve(fid))
                except NotFoundError:
                    registry.forget_file(self.base_url, file_id)
                    continue
                if remote.status in ("error", "deleted"):
                    continue
                return FileRef(id=remote.id, filename=remote.filename, bytes=remote.bytes,
                               sha256=sha, reused=True)
        return None

    def _find_file(self, remote_name: str, size: int) -> FileObject | None:
        for remote in self._client.files.list(purpose="fine-tune", limit=100, order="desc"):
            if remote.filename == remote_name and remote.bytes == size:
                return remote
        return None

    # jobs -------------------------------------------------------------------------------
    def _require_fine_tuning(self) -> None:
        if not self.capabilities.fine_tuning:
            raise no_fine_tuning(self.name)

    def create_job(self, spec: JobSpec) -> Job:
        self._require_fine_tuning()
        token = spec.metadata.get(TOKEN_KEY) or uuid.uuid4().hex
        body = job_request_body(spec, token)
        started = time.time()
        created = self._exactly_once(
            lambda: self._once.fine_tuning.jobs.create(**body),
            lambda: self._find_job(token, spec, started))
        return _job_from_sdk(created)

    def _find_job(self, token: str, spec: JobSpec,
                  started: float) -> FineTuningJob | None:
        for job in self._client.fine_tuning.jobs.list(limit=50):
            if job.training_file != spec.training_file:
                continue
            metadata = job.metadata or {}
            if metadata.get(TOKEN_KEY) == token:
                return job
            # An endpoint that drops metadata: same file, model and suffix, created since.
            if not metadata and job.model == spec.base_model and job.created_at >= started - 5 \
                    and (not spec.suffix or spec.suffix in (job.fine_tuned_model or spec.suffix)):
                return job
        return None

    def describe_request(self, spec: JobSpec) -> dict[str, Any]:
        """The dry run: what would be uploaded (spec's local files) and sent, sending nothing.
        File ids do not exist yet, so the body names them by placeholder."""
        self._require_fine_tuning()
        sent = replace(spec, training_file="<training file id>",
                       validation_file="<validation file id>" if spec.validation_file else None)
        described: dict[str, Any] = {"upload": _upload_plan(Path(spec.training_file))}
        if spec.validation_file:
            described["validation_upload"] = _upload_plan(Path(spec.validation_file))
        described["request"] = {
            "method": "POST", "url": f"{self.base_url}/fine_tuning/jobs",
            "body": job_request_body(sent, "<generated per job>")}
        return described

    def get_job(self, job_id: str) -> Job:
        return _job_from_sdk(self._call(lambda: self._client.fine_tuning.jobs.retrieve(job_id)))

    def list_jobs(self, limit: int = 20) -> list[Job]:
        page = self._call(lambda: self._client.fine_tuning.jobs.list(limit=limit))
        return [_job_from_sdk(job) for job in page.data]

    def list_events(self, job_id: str, after: str | None = None) -> list[ProviderEvent]:
        """Events newer than the event id `after`, oldest first."""

        def newest_first() -> list[FineTuningJobEvent]:
            found = []
            for event in self._client.fine_tuning.jobs.list_events(job_id, limit=100):
                if event.id == after or len(found) >= 10_000:
                    break
                found.append(event)
            return found

        return [_event_from_sdk(event) for event in reversed(self._call(newest_first))]

    def list_checkpoints(self, job_id: str) -> list[Checkpoint]:
        """OpenAI keeps the last three epochs' checkpoints, each a model chat can use."""
        page = self._call(lambda: self._client.fine_tuning.jobs.checkpoints.list(job_id))
        return sorted((_checkpoint_from_sdk(checkpoint) for checkpoint in page.data),
                      key=lambda checkpoint: checkpoint.step or 0)

    def cancel(self, job_id: str) -> Job:
        return _job_from_sdk(self._call(lambda: self._client.fine_tuning.jobs.cancel(job_id)))

    # chat -------------------------------------------------------------------------------
    def chat(self, model: str, messages: list[dict[str, Any]],
             options: ChatOptions = ChatOptions()) -> Reply:
        settings = {name: value for name, value in (
            ("max_tokens", options.max_tokens), ("temperature", options.temperature),
            ("top_p", options.top_p), ("seed", options.seed)) if value is not None}
        started = time.perf_counter()
        answer = self._call(lambda: self._client.chat.completions.create(
            model=model, messages=messages, **settings))
        usage = answer.usage
        return Reply(text=answer.choices[0].message.content or "", model=answer.model or model,
                     latency_s=time.perf_counter() - started,
                     prompt_tokens=usage.prompt_tokens if usage else None,
                     completion_tokens=usage.completion_tokens if usage else None)
