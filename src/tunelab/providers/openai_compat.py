"""The provider for every OpenAI-compatible endpoint (OpenAI, Kimi, `tunelab serve`, others).

One class, configured by a Profile (tunelab.providers.profiles). It speaks through the official
`openai` SDK; tunelab.providers.sdk_errors turns the SDK's errors into tunelab's, keeping only
the provider's code and message, with the key scrubbed out.

Two calls create something and must happen exactly once: the upload and the job create. The
SDK would retry them blindly after a timeout or a dropped answer, leaving two files or two
jobs; so the SDK's retries are off (for every call: ours, in tunelab.providers.retry, report
each retry and keep to --timeout), and after an ambiguous failure we first look for what the
lost call may have created (a file by its name, which carries the content hash; a job by the
client token in its metadata) before sending again.

Everything the SDK hands back becomes tunelab's Job, ProviderEvent or Checkpoint in the
`_*_from_sdk` functions, which scrub every string of the key first.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

import openai
from openai.types import FileObject
from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent
from openai.types.fine_tuning.jobs import FineTuningJobCheckpoint

from tunelab.errors import ProviderError, TransientProviderError
from tunelab.home import cache_dir
from tunelab.providers.base import (
    Checkpoint,
    FileRef,
    Job,
    JobSpec,
    ProviderEvent,
    no_weights,
)
from tunelab.providers.profiles import Profile, no_fine_tuning
from tunelab.providers.retry import DEFAULT_ATTEMPTS, RetryPolicy
from tunelab.providers.sdk_calls import ErrorMap, SdkCalls, scrubbed_json
from tunelab.providers.sdk_errors import (
    from_openai,
    scrub,
    transport_errors,
)
from tunelab.registry import open_registry
from tunelab.registry.metrics import step_metrics

TOKEN_KEY = "tunelab_token"  # metadata key that makes a job create idempotent
REQUEST_TIMEOUT_S = 120.0  # one request, when no --timeout is given
# Caps on what an account may send (SECURITY.md, "What a provider may send"):
MAX_PAGES = 1000  # pages of one listing (100 jobs a page): a has_more that never ends stops
MAX_DOWNLOAD_BYTES = 512 * 2**20  # one downloaded file (OpenAI's own upload limit);
# `tunelab migrate pull --max-download-mb` raises it


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# The SDK objects below become tunelab's here, and only here: every string in them is
# scrubbed of the key (and of anything shaped like one) on the way in, so the registry and
# the CLI only ever hold scrubbed text.
def _job_from_sdk(job: FineTuningJob, key: str | None) -> Job:
    raw = scrubbed_json(job, key)
    status = raw.get("status") or "unknown"
    return Job(id=raw["id"], status=status, native_status=status,
               base_model=raw.get("model") or "", fine_tuned_model=raw.get("fine_tuned_model"),
               created_at=raw.get("created_at"), finished_at=raw.get("finished_at"),
               training_file=raw.get("training_file"),
               validation_file=raw.get("validation_file"), suffix=_suffix_of(raw),
               trained_tokens=_count(raw.get("trained_tokens")),
               error=raw.get("error") or None, raw=raw)


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _suffix_of(raw: dict[str, Any]) -> str | None:
    # OpenAI's job object has no suffix field; it shows up inside fine_tuned_model and, for
    # jobs we created, in the metadata.
    return raw.get("suffix") or (raw.get("metadata") or {}).get("tunelab_suffix")


def _event_from_sdk(event: FineTuningJobEvent, key: str | None) -> ProviderEvent:
    raw = scrubbed_json(event, key)
    return ProviderEvent(id=raw["id"], created_at=float(raw.get("created_at") or 0),
                         message=raw.get("message") or "", level=raw.get("level") or "info",
                         type=raw.get("type") or "message", data=raw.get("data"))


def _checkpoint_from_sdk(checkpoint: FineTuningJobCheckpoint, key: str | None) -> Checkpoint:
    raw = scrubbed_json(checkpoint, key, exclude_none=True)
    return Checkpoint(job_id=raw["fine_tuning_job_id"], name=raw["id"], kind="step",
                      created_at=float(raw["created_at"]), step=raw.get("step_number"),
                      metrics=step_metrics(raw.get("metrics") or {}),
                      model=raw.get("fine_tuned_model_checkpoint"))


def hyperparameters(spec: JobSpec) -> dict[str, Any]:
    """The hyperparameters the user gave, in OpenAI's names (the rest stay "auto")."""
    values = {"n_epochs": spec.epochs, "learning_rate_multiplier": spec.learning_rate,
              "batch_size": spec.batch_size,
              "beta": spec.beta if spec.method == "dpo" else None}
    return {name: value for name, value in values.items() if value is not None}


def method_body(spec: JobSpec) -> dict[str, Any]:
    """OpenAI's `method`: {"type": T, T: {"hyperparameters": {...}}}, T supervised or dpo."""
    return {"type": spec.method, spec.method: {"hyperparameters": hyperparameters(spec)}}


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
    """The JSON body of POST /fine_tuning/jobs, hyperparameters under its method's key."""
    metadata = {**spec.metadata, TOKEN_KEY: token}
    if spec.suffix:
        metadata["tunelab_suffix"] = spec.suffix
    body: dict[str, Any] = {
        "model": spec.base_model, "training_file": spec.training_file,
        "method": method_body(spec),
        "metadata": metadata,
    }
    optional = {"validation_file": spec.validation_file, "suffix": spec.suffix,
                "seed": spec.seed}
    body.update({name: value for name, value in optional.items() if value is not None})
    return body


def upload_plans(spec: JobSpec) -> dict[str, Any]:
    """What a dry run would upload for `spec`'s local files (as OpenAI and Together take
    them: JSONL, purpose fine-tune), under "upload" and "validation_upload"."""
    plans: dict[str, Any] = {}
    for role, local in (("upload", spec.training_file),
                        ("validation_upload", spec.validation_file)):
        if local:
            sent = as_jsonl(Path(local))
            plans[role] = {"file": str(Path(local)), "bytes": sent.stat().st_size,
                           "sha256": file_sha256(sent), "purpose": "fine-tune"}
    return plans


@dataclass(frozen=True)
class RemoteModel:
    """A model the key reaches (GET /v1/models), with the shutdown day the endpoint
    announces (YYYY-MM-DD), if any."""

    id: str
    owned_by: str | None = None
    shutdown_date: str | None = None
    unreadable_date: str | None = None  # what the endpoint sent instead of a date


def _shutdown_date(value: Any, key: str | None) -> tuple[str | None, str | None]:
    """(the day as YYYY-MM-DD, what was sent when it is no date)."""
    if value in (None, ""):
        return None, None
    text = scrub(str(value), key)
    try:
        return date.fromisoformat(text[:10]).isoformat(), None
    except ValueError:
        return None, text[:40]


class OpenAICompatProvider(SdkCalls):
    """An OpenAI-compatible endpoint. `base_url` overrides the profile's."""

    def __init__(self, profile: Profile, *, base_url: str | None = None,
                 max_retries: int = DEFAULT_ATTEMPTS - 1, retry: RetryPolicy = RetryPolicy(),
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.profile = profile
        self._calls_to((base_url or profile.base_url).rstrip("/"), retry, sleep)
        self.attempts = max_retries + 1  # for calls safe to repeat
        self._client  # noqa: B018 - the key at once: building this provider needs it

    def __repr__(self) -> str:  # never show the client (it holds the key)
        return f"OpenAICompatProvider({self.name!r}, base_url={self.base_url!r})"

    # plumbing -------------------------------------------------------------------------
    def _connect(self, key: str) -> openai.OpenAI:
        # No SDK retries: they are silent, and blind for creates (see the module docstring).
        # Ours (tunelab.providers.retry) report each one and keep to --timeout, which also
        # bounds each request.
        return openai.OpenAI(api_key=key, base_url=self._address, max_retries=0,
                             timeout=self._retry.timeout or REQUEST_TIMEOUT_S)

    def _api_errors(self) -> tuple[type[Exception], ErrorMap]:
        return openai.APIError, from_openai

    # files ------------------------------------------------------------------------------
    def upload(self, path: Path) -> FileRef:
        """Upload for fine-tuning, unless this endpoint already holds the same bytes."""
        path = self._sendable(path)
        sha = file_sha256(path)
        size = path.stat().st_size
        reused = self._reuse_upload(sha)
        if reused is not None:
            return reused
        # The remote name carries the hash, so a lost upload can be recognised by it.
        remote_name = f"{path.stem}.{sha[:16]}{path.suffix}"

        def send() -> FileObject:
            with path.open("rb") as handle:
                return self._client.files.create(file=(remote_name, handle),
                                                 purpose="fine-tune")

        created = self._exactly_once(f"uploading {path.name}", send,
                                     lambda: self._find_file(remote_name, size))
        with open_registry() as registry:
            registry.record_file(file_id=created.id, provider=self.name, endpoint=self.base_url,
                                 sha256=sha, filename=path.name, size=size, purpose="fine-tune")
        return FileRef(id=created.id, filename=remote_name, bytes=size, sha256=sha)

    def _sendable(self, path: Path) -> Path:
        """The file the endpoint is sent for `path` (an endpoint profile may want its bytes
        otherwise: Azure's a byte-order mark)."""
        return as_jsonl(path)

    def _reuse_upload(self, sha: str) -> FileRef | None:
        from tunelab.providers.cloud_training import reused_upload

        def check(file_id: str) -> FileRef | None:
            remote = self._retrying(f"checking the earlier upload {file_id}",
                                    lambda: self._client.files.retrieve(file_id))
            if remote.status in ("error", "deleted"):
                return None
            return FileRef(id=remote.id, filename=scrub(remote.filename, self._key),
                           bytes=remote.bytes, sha256=sha, reused=True)

        return reused_upload(self.base_url, sha, check)

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
        body = self._job_body(spec, token)
        started = time.time()
        created = self._exactly_once(
            "creating the fine-tuning job", lambda: self._send_job(body),
            lambda: self._find_job(token, spec, started))
        return _job_from_sdk(created, self._key)

    def _job_body(self, spec: JobSpec, token: str) -> dict[str, Any]:
        """The JSON body of the job create, as sent (and as a dry run shows it)."""
        return job_request_body(spec, token)

    def _send_job(self, body: dict[str, Any]) -> FineTuningJob:
        return self._client.fine_tuning.jobs.create(**body)

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
        described = upload_plans(spec)
        described["request"] = {
            "method": "POST", "url": f"{self.base_url}/fine_tuning/jobs",
            "body": self._job_body(sent, "<generated per job>")}
        return described

    def get_job(self, job_id: str) -> Job:
        return _job_from_sdk(self._retrying(
            f"reading job {job_id}", lambda: self._client.fine_tuning.jobs.retrieve(job_id)),
            self._key)

    def list_jobs(self, limit: int = 20) -> list[Job]:
        page = self._retrying("listing jobs",
                              lambda: self._client.fine_tuning.jobs.list(limit=limit))
        return [_job_from_sdk(job, self._key) for job in page.data]

    def list_events(self, job_id: str, after: str | None = None) -> list[ProviderEvent]:
        """Events newer than the event id `after`, oldest first."""

        def newest_first() -> list[FineTuningJobEvent]:
            found = []
            for event in self._client.fine_tuning.jobs.list_events(job_id, limit=100):
                if event.id == after or len(found) >= 10_000:
                    break
                found.append(event)
            return found

        return [_event_from_sdk(event, self._key)
                for event in reversed(self._retrying(f"reading the events of {job_id}",
                                                     newest_first))]

    def list_checkpoints(self, job_id: str) -> list[Checkpoint]:
        """OpenAI keeps the last three epochs' checkpoints, each a model chat can use."""
        page = self._retrying(f"reading the checkpoints of {job_id}",
                              lambda: self._client.fine_tuning.jobs.checkpoints.list(job_id))
        return sorted((_checkpoint_from_sdk(checkpoint, self._key) for checkpoint in page.data),
                      key=lambda checkpoint: checkpoint.step or 0)

    def cancel(self, job_id: str) -> Job:
        return _job_from_sdk(self._retrying(
            f"cancelling {job_id}", lambda: self._client.fine_tuning.jobs.cancel(job_id)),
            self._key)

    # the account (tunelab migrate) -----------------------------------------------------
    def all_jobs(self, on_page: Callable[[int, int], None] | None = None) -> list[Job]:
        """Every fine-tuning job of the account, newest first, following every page: at
        most MAX_PAGES pages and, with --timeout, within it (a has_more that never ends is
        the provider's fault, not a reason to page forever). `on_page(pages, jobs)` after
        each page."""
        started = time.monotonic()
        page = self._retrying("listing every job",
                              lambda: self._client.fine_tuning.jobs.list(limit=100))
        found: list[Job] = []
        pages = 1
        while True:
            found += [_job_from_sdk(job, self._key) for job in page.data]
            if on_page is not None:
                on_page(pages, len(found))
            if not page.has_next_page():
                return found
            if pages >= MAX_PAGES:
                raise ProviderError(f"{self.name} listed jobs for {pages} pages ({len(found)} "
                                    "jobs) and still said there were more; stopped",
                                    code="too_many_pages",
                                    fix="check --base-url: a real account ends its listing")
            spent = time.monotonic() - started
            if self._retry.timeout is not None and spent > self._retry.timeout:
                raise TransientProviderError(
                    f"{self.name}: listing jobs took over --timeout {self._retry.timeout:g}s "
                    f"({pages} pages, {len(found)} jobs so far)", code="timeout",
                    fix="raise --timeout, or check --base-url")
            page = self._retrying("listing every job", page.get_next_page)
            pages += 1

    def list_models(self) -> list[RemoteModel]:
        """Every model the key reaches, each with its announced shutdown day (a day that is
        no date is kept aside as `unreadable_date`; ids are scrubbed like every text)."""
        found = self._retrying("listing models", lambda: list(self._client.models.list()))
        models = []
        for model in found:
            day, unreadable = _shutdown_date(getattr(model, "shutdown_date", None), self._key)
            models.append(RemoteModel(scrub(model.id, self._key), model.owned_by, day,
                                      unreadable))
        return models

    def download_file(self, file_id: str, target: Path,
                      max_bytes: int = MAX_DOWNLOAD_BYTES) -> None:
        """Write a file's content to `target`, whole (each retry starts the file over), and
        no more than `max_bytes` of it: past that the file is removed and refused."""

        def send() -> None:
            try:
                with self._client.files.with_streaming_response.content(file_id) as answer, \
                        target.open("wb") as handle:
                    written = 0
                    for chunk in answer.iter_bytes(1 << 20):
                        written += len(chunk)
                        if written > max_bytes:
                            break
                        handle.write(chunk)
            # the stream broke off: the network's fault (the SDK's own httpx2 included)
            except transport_errors() as error:
                raise openai.APIConnectionError(request=error.request) from None
            if written > max_bytes:
                target.unlink(missing_ok=True)
                raise ProviderError(f"{self.name}: file {scrub(file_id, self._key)} is larger "
                                    f"than the {max_bytes / 2**20:g} MB download cap; "
                                    "nothing kept", code="too_large",
                                    fix="raise the cap if the file is expected to be that big")

        self._retrying(f"downloading {file_id}", send)

    def download_weights(self, job_id: str, kind: str, dest: Path) -> Path:
        raise no_weights(self.name)  # OpenAI's API serves fine-tunes, never their weights

