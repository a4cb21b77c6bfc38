"""Fireworks AI: LoRA fine-tuning of open models (SFT or DPO), adapters downloadable.

Spoken to through the official `fireworks-ai` SDK (imported only when a Fireworks provider
is first used, so building one reads no key). Everything lives under an account:
`accounts/ACCOUNT/datasets/ID`, `.../supervisedFineTuningJobs/ID`, `.../dpoJobs/ID`,
`.../models/ID` (--fireworks-account or FIREWORKS_ACCOUNT_ID; the key is FIREWORKS_API_KEY).
Fireworks takes OpenAI chat JSONL for SFT and OpenAI's preference rows for DPO as they are.

Exactly once, without lookups by guess: Fireworks lets the caller name what it creates. A
dataset is named by the hash of its bytes (`tl-<sha>`: created, then its file uploaded; a
rerun finds it READY and sends nothing), a job by a token made once per launch
(`tl-sft-...`, `tl-dpo-...`). After an ambiguous failure the name is read back before
anything is sent again. The SDK's own retries are off; ours (tunelab.providers.retry) report
each one and keep to --timeout.

Mapped from TrainConfig (what the user gave; the rest is Fireworks' default): --epochs,
--learning-rate (Fireworks' own rate, not a multiplier), --batch-size (batchSizeSamples:
examples per step; Fireworks' batchSize counts tokens), --lora-r (loraRank), --max-length
(maxContextLength), --suffix (displayName), --method dpo with --beta (lossConfig DPO). LoRA
only: --full is refused by name. Fireworks has no event stream for these jobs: events are
derived from the job (created, its state, its progress, its end). A finished job's model is a
LoRA addon that answers once deployed; its files download through getDownloadEndpoint
(signed URLs).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from tunelab.errors import NotFoundError, ProviderError, TransientProviderError, UsageError
from tunelab.providers.base import (
    Capabilities,
    Checkpoint,
    FileRef,
    Job,
    JobSpec,
    ProviderEvent,
    ProviderSettings,
)
from tunelab.providers.profiles import Profile
from tunelab.providers.retry import RetryPolicy
from tunelab.providers.sdk_calls import ErrorMap, SdkCalls, scrubbed_json, timestamp
from tunelab.providers.sdk_errors import from_fireworks, scrub
from tunelab.registry import open_registry

NAME = "fireworks"
BASE_URL = "https://api.fireworks.ai"
ACCOUNT_ENV = "FIREWORKS_ACCOUNT_ID"
REQUEST_TIMEOUT_S = 120.0
CAPABILITIES = Capabilities(methods=frozenset({"supervised", "dpo"}),
                            weights=frozenset({"adapter"}), full_tuning=False,
                            methods_note="LoRA only, SFT and DPO")
PROFILE = Profile(name=NAME, base_url=BASE_URL, key_envs=("FIREWORKS_API_KEY",),
                  capabilities=CAPABILITIES, docs="https://app.fireworks.ai/settings/users/api-keys")
KINDS = {"supervised": "sft", "dpo": "dpo"}  # the job id's infix, by method
# Fireworks' JobState (the SDK's types) in tunelab's vocabulary
STATUS = {"JOB_STATE_CREATING": "queued", "JOB_STATE_PENDING": "queued",
          "JOB_STATE_CREATING_INPUT_DATASET": "queued", "JOB_STATE_RE_QUEUEING": "queued",
          "JOB_STATE_IDLE": "queued", "JOB_STATE_VALIDATING": "validating_files",
          "JOB_STATE_RUNNING": "running", "JOB_STATE_WRITING_RESULTS": "running",
          "JOB_STATE_CANCELLING": "running", "JOB_STATE_PAUSED": "running",
          "JOB_STATE_COMPLETED": "succeeded", "JOB_STATE_EARLY_STOPPED": "succeeded",
          "JOB_STATE_FAILED": "failed", "JOB_STATE_EXPIRED": "failed",
          "JOB_STATE_CANCELLED": "cancelled", "JOB_STATE_DELETING": "cancelled",
          "JOB_STATE_DELETING_CLEANING_UP": "cancelled"}
ENDED = ("succeeded", "failed", "cancelled")
T = TypeVar("T")


class FireworksSettings(BaseModel):
    """Fireworks' own settings: each field is a flag of the commands that start jobs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fireworks_account: str | None = Field(
        None, description=f"Fireworks account id (default: {ACCOUNT_ENV}).")


def status_of(native: str | None) -> str:
    return STATUS.get(native or "", native or "unknown")


def _tail(name: str | None) -> str:
    """The last segment of a resource name: accounts/a/models/m -> m."""
    return (name or "").rstrip("/").rsplit("/", 1)[-1]


def job_arguments(spec: JobSpec, account: str, job_id: str) -> dict[str, Any]:
    """What the SDK's create gets for `spec`: only what the user gave (files are dataset
    ids, or local paths in a dry run)."""
    if spec.method not in KINDS:
        raise UsageError(f"--method {spec.method}: Fireworks trains supervised or dpo",
                         fix="pass --method supervised or --method dpo")
    CAPABILITIES.check_full(NAME, spec.full)  # the door asked already; dry runs, callers
    if spec.beta is not None and spec.method != "dpo":
        raise UsageError("--beta is a DPO setting", fix="pass --method dpo, or leave out --beta")
    training = {"base_model": spec.base_model, "epochs": spec.epochs,
                "learning_rate": spec.learning_rate, "batch_size_samples": spec.batch_size,
                "lora_rank": spec.lora_r, "max_context_length": spec.max_length,
                "evaluation_dataset": _dataset_name(account, spec.validation_file)}
    training = {key: value for key, value in training.items() if value is not None}
    common = {"dataset": _dataset_name(account, spec.training_file),
              **({"display_name": spec.suffix} if spec.suffix else {})}
    if spec.method == "supervised":
        return {**common, **training, "supervised_fine_tuning_job_id": job_id}
    loss: dict[str, Any] = {"method": "DPO"}  # unset means GRPO on Fireworks' preference API
    if spec.beta is not None:
        loss["dpo"] = {"beta": spec.beta}
    evaluation = training.pop("evaluation_dataset", None)
    if evaluation:
        raise UsageError("--validation-file: Fireworks' DPO jobs take no evaluation dataset",
                         fix="leave out --validation-file for --method dpo")
    return {**common, "training_config": training, "loss_config": loss, "dpo_job_id": job_id}


def _dataset_name(account: str, dataset: str | None) -> str | None:
    if dataset is None or "/" in dataset or dataset.endswith(".jsonl"):
        return dataset  # a full name, or a local path in a dry run
    return f"accounts/{account}/datasets/{dataset}"


class FireworksProvider(SdkCalls):
    """Fireworks' datasets, SFT and DPO jobs, chat and adapters. The key and the SDK are
    taken on the first call, so a dry run needs neither."""

    profile = PROFILE

    def __init__(self, *, base_url: str | None = None, retry: RetryPolicy = RetryPolicy(),
                 settings: FireworksSettings | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        import os

        self._calls_to((base_url or BASE_URL).rstrip("/").removesuffix("/v1"), retry, sleep)
        self.settings = settings or FireworksSettings()
        self.account = self.settings.fireworks_account or os.environ.get(ACCOUNT_ENV, "")
        if not self.account.strip():
            raise UsageError("no Fireworks account given",
                             fix=f"pass --fireworks-account ID or set {ACCOUNT_ENV}")

    def __repr__(self) -> str:  # never show the client (it holds the key)
        return f"FireworksProvider(account={self.account!r}, base_url={self.base_url!r})"

    # plumbing -------------------------------------------------------------------------
    def _connect(self, key: str) -> Any:
        import fireworks

        # base_url given only when it is not Fireworks' own: the SDK then sends chat to
        # its inference host itself.
        own = self._address == BASE_URL
        return fireworks.Fireworks(api_key=key, account_id=self.account,
                                   base_url=None if own else self._address, max_retries=0,
                                   timeout=self._retry.timeout or REQUEST_TIMEOUT_S)

    def _api_errors(self) -> tuple[type[Exception], ErrorMap]:
        import fireworks

        return fireworks.APIError, from_fireworks

    def _found(self, read: Callable[[], T]) -> Callable[[], T | None]:
        """`read` of a name we gave, None while it does not exist (a create is sent once:
        after a failure, a lost answer or a 409, the name is read back first)."""
        def find() -> T | None:
            try:
                return self._call(read)
            except NotFoundError:
                return None
        return find

    def _job(self, obj: Any) -> Job:
        raw = scrubbed_json(obj, self._key, by_alias=True)
        native = raw.get("state")
        status = status_of(native)
        training = raw.get("trainingConfig") or raw  # DPO jobs nest it
        model = training.get("outputModel") if status == "succeeded" else None
        if model and "/" not in model:
            model = f"accounts/{self.account}/models/{model}"
        failure = raw.get("status") or {}
        error = {"code": failure.get("code") or "failed",
                 "message": failure.get("message") or native} if status == "failed" else None
        return Job(id=_tail(raw.get("name")), status=status, native_status=native,
                   base_model=training.get("baseModel") or "", fine_tuned_model=model,
                   created_at=timestamp(raw.get("createTime")),
                   finished_at=timestamp(raw.get("completedTime")),
                   training_file=_tail(raw.get("dataset")) or None,
                   validation_file=_tail(raw.get("evaluationDataset")) or None,
                   suffix=raw.get("displayName"), error=error, raw=raw)

    def _resource(self, job_id: str) -> Any:
        """The SDK resource holding `job_id`: ours say their kind in the id."""
        if job_id.startswith("tl-dpo-"):
            return self._client.dpo_jobs
        return self._client.supervised_fine_tuning_jobs

    # files ------------------------------------------------------------------------------
    def upload(self, path: Path) -> FileRef:
        """A dataset named by the hash of its bytes: created, then its file uploaded; found
        READY, nothing is sent."""
        from tunelab.providers.openai_compat import as_jsonl, file_sha256

        sent = as_jsonl(Path(path))
        sha, size = file_sha256(sent), sent.stat().st_size
        dataset_id = f"tl-{sha[:24]}"
        datasets = self._client.datasets
        lines = sum(1 for line in sent.open("rb") if line.strip())
        find = self._found(lambda: datasets.get(dataset_id))
        existing = self._attempts(f"looking for dataset {dataset_id}", self.attempts).run(
            find) or self._exactly_once(
            f"creating dataset {dataset_id}",
            lambda: datasets.create(dataset_id=dataset_id, dataset={
                "user_uploaded": {}, "example_count": str(lines), "display_name": sent.name}),
            find)
        reused = existing.state == "READY"
        if not reused:
            def send() -> Any:
                with sent.open("rb") as handle:
                    return datasets.upload(dataset_id, file=(sent.name, handle))

            self._retrying(f"uploading {sent.name}", send)  # the same bytes under one name
        with open_registry() as registry:
            registry.record_file(file_id=dataset_id, provider=self.name, endpoint=self.base_url,
                                 sha256=sha, filename=sent.name, size=size, purpose="fine-tune")
        return FileRef(id=dataset_id, filename=sent.name, bytes=size, sha256=sha, reused=reused)

    # jobs -------------------------------------------------------------------------------
    def describe_request(self, spec: JobSpec) -> dict[str, Any]:
        """The dry run: what would be uploaded and sent, sending nothing."""
        from tunelab.providers.openai_compat import as_jsonl, file_sha256

        kind = KINDS.get(spec.method, spec.method)
        path = "supervisedFineTuningJobs" if kind == "sft" else "dpoJobs"
        described: dict[str, Any] = {}
        for role, local in (("upload", spec.training_file),
                            ("validation_upload", spec.validation_file)):
            if local:
                sent = as_jsonl(Path(local))
                described[role] = {"file": local, "bytes": sent.stat().st_size,
                                   "dataset": f"tl-{file_sha256(sent)[:24]}"}
        named = replace(spec, training_file="<dataset id>",
                        validation_file="<dataset id>" if spec.validation_file else None)
        described["request"] = {
            "method": "POST", "url": f"{self.base_url}/v1/accounts/{self.account}/{path}",
            "arguments": job_arguments(named, self.account, f"tl-{kind}-<generated per job>")}
        return described

    def create_job(self, spec: JobSpec) -> Job:
        kind = KINDS.get(spec.method, spec.method)
        job_id = f"tl-{kind}-{uuid.uuid4().hex[:20]}"
        arguments = job_arguments(spec, self.account, job_id)
        resource = self._resource(job_id)
        created = self._exactly_once("creating the fine-tuning job",
                                     lambda: resource.create(**arguments),
                                     self._found(lambda: resource.get(job_id)))
        return self._job(created)

    def get_job(self, job_id: str) -> Job:
        def read() -> Any:
            try:
                return self._call(lambda: self._resource(job_id).get(job_id))
            except NotFoundError:
                if job_id.startswith("tl-"):
                    raise
                return self._call(lambda: self._client.dpo_jobs.get(job_id))  # not ours

        return self._job(self._retrying(f"reading job {job_id}", read))

    def list_jobs(self, limit: int = 20) -> list[Job]:
        def both() -> list[Any]:  # the first page of each kind: the newest are enough
            client = self._client
            sft = client.supervised_fine_tuning_jobs.list(page_size=limit)
            dpo = client.dpo_jobs.list(page_size=limit)
            return [*(sft.supervised_fine_tuning_jobs or []), *(dpo.dpo_jobs or [])]

        jobs = [self._job(job) for job in self._retrying("listing jobs", both)]
        return sorted(jobs, key=lambda job: -(job.created_at or 0))[:limit]

    def list_events(self, job_id: str, after: str | None = None) -> list[ProviderEvent]:
        """What the job itself says, as events with stable ids, oldest first."""
        job = self.get_job(job_id)
        created = job.created_at or 0.0
        events = [ProviderEvent(f"{job_id}:created", created,
                                f"Fine-tuning job {job_id} created on {job.base_model}")]
        progress = job.raw.get("jobProgress") or {}
        if progress.get("percent") is not None:
            events.append(ProviderEvent(
                f"{job_id}:progress:{progress['percent']}", created,
                f"{progress['percent']}% done (epoch {progress.get('epoch', '?')})"))
        events.append(ProviderEvent(f"{job_id}:state:{job.native_status}",
                                    job.finished_at or created, f"state {job.native_status}",
                                    level="error" if job.status == "failed" else "info"))
        if job.status == "failed" and job.error:
            events.append(ProviderEvent(f"{job_id}:error", job.finished_at or created,
                                        str(job.error.get("message")), level="error"))
        if job.status == "succeeded" and job.fine_tuned_model:
            events.append(ProviderEvent(
                f"{job_id}:model", job.finished_at or created,
                f"{job.fine_tuned_model} is a LoRA addon: it answers once deployed "
                f"(`firectl create deployment {job.fine_tuned_model}`), and `tunelab pull "
                f"{job_id}` brings its adapter home"))
        ids = [event.id for event in events]
        return events[ids.index(after) + 1:] if after in ids else events

    def list_checkpoints(self, job_id: str) -> list[Checkpoint]:
        """Fireworks keeps the trained addon, one model: the job's latest checkpoint."""
        job = self.get_job(job_id)
        if job.fine_tuned_model is None:
            return []
        return [Checkpoint(job_id=job_id, name=_tail(job.fine_tuned_model), kind="latest",
                           created_at=job.finished_at or job.created_at or 0.0,
                           model=job.fine_tuned_model)]

    def cancel(self, job_id: str) -> Job:
        self._retrying(f"cancelling {job_id}",
                       lambda: self._resource(job_id).cancel(job_id, body={}))
        return self.get_job(job_id)

    # weights ----------------------------------------------------------------------------
    def download_weights(self, job_id: str, kind: str, dest: Path) -> Path:
        """The job's LoRA addon, file by file from the signed URLs getDownloadEndpoint gives
        (each retry starts that file over); the folder holding adapter_config.json."""
        import httpx

        if kind not in self.capabilities.weights:
            raise UsageError(f"Fireworks trains LoRA addons only: no {kind!r} weights",
                             fix="pass --kind adapter")
        job = self.get_job(job_id)
        if job.fine_tuned_model is None:
            raise NotFoundError(f"job {job_id} has no trained model yet (status {job.status})",
                                fix="wait until it succeeds")
        model_id = _tail(job.fine_tuned_model)
        answer = self._retrying(f"asking where {model_id} downloads from",
                                lambda: self._client.models.get_download_endpoint(model_id))
        urls = answer.filename_to_signed_urls or {}
        dest.mkdir(parents=True, exist_ok=True)
        for filename, url in sorted(urls.items()):
            target = (dest / filename).resolve()
            if dest.resolve() not in target.parents:  # a name may not leave dest
                raise ProviderError(f"Fireworks named a file outside the download: "
                                    f"{scrub(filename, self._key)[:80]}", code="bad_name",
                                    fix="report it; nothing else was written")
            target.parent.mkdir(parents=True, exist_ok=True)
            self._retrying(f"downloading {filename}", lambda url=url, target=target:
                           _fetch(httpx, url, target))
        found = sorted(dest.rglob("adapter_config.json"), key=lambda path: len(path.parts))
        if not found:
            raise ProviderError(f"{model_id}'s files hold no adapter_config.json",
                                code="bad_download", fix="check the model on Fireworks")
        return found[0].parent


def _fetch(httpx: Any, url: str, target: Path) -> None:
    """One signed URL into `target`, whole; a broken transfer is a transient error."""
    try:
        with httpx.stream("GET", url, timeout=REQUEST_TIMEOUT_S) as answer:
            if answer.status_code >= 500 or answer.status_code == 429:
                raise TransientProviderError(f"fireworks: download answered "
                                             f"{answer.status_code}", code=str(
                                                 answer.status_code), fix="retry")
            if answer.status_code != 200:
                raise ProviderError(f"fireworks: download answered {answer.status_code}",
                                    code=str(answer.status_code),
                                    fix="the signed URL may have expired: pull again")
            with target.open("wb") as out:
                for chunk in answer.iter_bytes(1 << 20):
                    out.write(chunk)
    except httpx.TransportError as error:
        raise TransientProviderError(f"fireworks: the download broke off ({type(error).__name__})",
                                     code="connection_error", fix="retry") from None


def build(settings: ProviderSettings) -> FireworksProvider:
    """The factory tunelab.providers.PROVIDERS holds for "fireworks"."""
    return FireworksProvider(base_url=settings.base_url, retry=settings.retry,
                             settings=settings.own_as(FireworksSettings))


__all__ = ["FireworksProvider", "FireworksSettings", "build", "job_arguments"]
