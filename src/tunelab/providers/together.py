"""Together AI: open models fine-tuned with LoRA (or fully), SFT or DPO, weights downloadable.

Spoken to through the official `together` SDK (imported only when a Together provider is
built). What Together takes as it is: OpenAI chat JSONL for SFT and OpenAI's preference
JSONL for DPO (`training_method` "dpo" with `dpo_beta`), so nothing is converted. The SDK
checks a file before it uploads it (`check_file`); a refusal names the file.

Two calls create something and must happen exactly once, the upload and the job create. The
SDK's own retries are off (ours, tunelab.providers.retry, report each one and keep to
--timeout). An upload repeated after a lost answer is safe: Together answers 409 with the
file that has the same checksum, and the SDK adopts it. A job create is not: after an
ambiguous failure we first look for a job made since on the same file and model.

Together's job has no error field: a failed job's reason is its `job_error` event, which
get_job reads. Its events have no ids, so an event's id is its position in the job's list.
The trained weights come back as one archive from GET /v1/finetune/download (zstd-compressed
tar by default, gzip when the answer says x-tar), unpacked here with `zstandard` (the
`together` extra installs it).

Mapped from TrainConfig (what the user gave; the rest is Together's default): --epochs
(n_epochs), --learning-rate (learning_rate, Together's peak rate), --batch-size,
--max-length (max_seq_length), --full/--lora (training_type), --lora-r, --seed
(random_seed), --suffix, --method dpo and --beta (dpo_beta). Its own flags:
`TogetherSettings`.
"""

from __future__ import annotations

import shutil
import tarfile
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tunelab.errors import DataError, ProviderError, UsageError, command
from tunelab.providers.base import (
    Capabilities,
    ChatOptions,
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
from tunelab.providers.sdk_errors import (
    first_line,
    from_together,
    scrub,
    transport_errors,
)
from tunelab.registry import open_registry
from tunelab.registry.metrics import STEP, TRAIN_LOSS, VALID_LOSS

NAME = "together"
BASE_URL = "https://api.together.ai"
REQUEST_TIMEOUT_S = 120.0
CAPABILITIES = Capabilities(methods=frozenset({"supervised", "dpo"}),
                            weights=frozenset({"adapter", "merged"}))
PROFILE = Profile(name=NAME, base_url=BASE_URL, key_envs=("TOGETHER_API_KEY",),
                  capabilities=CAPABILITIES, docs="https://api.together.ai/settings/api-keys")
MAX_SUFFIX = 40  # the SDK's documented limit for the output model's suffix
# Together's job statuses (FinetuneResponse.status) in tunelab's vocabulary
STATUS = {"pending": "queued", "queued": "queued", "running": "running",
          "compressing": "running", "uploading": "running", "cancel_requested": "running",
          "cancelled": "cancelled", "error": "failed", "completed": "succeeded"}
METHODS = {"supervised": "sft", "dpo": "dpo"}
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class TogetherSettings(BaseModel):
    """Together's own settings: each field is a flag of the commands that start jobs, under
    "Together AI" in their --help. None: Together's default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    together_evals: int | None = Field(
        None, ge=0, description="Evaluations on the validation file during training "
                                "(n_evals; default: Together's, 0).")
    together_checkpoints: int | None = Field(
        None, ge=1, description="Checkpoints kept during training (n_checkpoints; default 1).")


def status_of(native: str | None) -> str:
    return STATUS.get(native or "", native or "unknown")


def create_arguments(spec: JobSpec, settings: TogetherSettings) -> dict[str, Any]:
    """What create_job hands the SDK's fine_tuning.create for `spec` (and the dry run shows):
    only what the user gave, the rest left to Together."""
    if spec.method not in METHODS:
        raise UsageError(f"--method {spec.method}: Together trains sft or dpo",
                         fix="pass --method supervised or --method dpo")
    if spec.suffix and len(spec.suffix) > MAX_SUFFIX:
        raise UsageError(f"--suffix is longer than Together's {MAX_SUFFIX} characters",
                         fix="pass a shorter --suffix")
    if spec.beta is not None and spec.method != "dpo":
        raise UsageError("--beta is DPO's: this job is supervised", fix="add --method dpo")
    arguments: dict[str, Any] = {"model": spec.base_model, "training_file": spec.training_file,
                                 "training_method": METHODS[spec.method]}
    given = {"validation_file": spec.validation_file, "n_epochs": spec.epochs,
             "learning_rate": spec.learning_rate, "batch_size": spec.batch_size,
             "max_seq_length": spec.max_length, "lora_r": spec.lora_r,
             "random_seed": spec.seed, "suffix": spec.suffix, "dpo_beta": spec.beta,
             "n_evals": settings.together_evals,
             "n_checkpoints": settings.together_checkpoints}
    if spec.full and spec.lora_r is not None:
        raise UsageError("--lora-r sets a LoRA adapter's rank: this job is --full",
                         fix="leave out --lora-r, or train --lora")
    if spec.full is not None or spec.lora_r is not None:  # the SDK reads lora_r with lora only
        given["lora"] = not spec.full
    if spec.method == "supervised":  # what the SDK would pick, said so it does not warn
        given["train_on_inputs"] = "auto"
    arguments.update({key: value for key, value in given.items() if value is not None})
    return arguments


class TogetherProvider(SdkCalls):
    """Together's fine-tuning, files, chat and weights. The key is read on the first call,
    so a dry run needs none."""

    profile = PROFILE

    def __init__(self, *, base_url: str | None = None, retry: RetryPolicy = RetryPolicy(),
                 settings: TogetherSettings | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._calls_to((base_url or BASE_URL).rstrip("/").removesuffix("/v1"), retry, sleep)
        self.settings = settings or TogetherSettings()

    def __repr__(self) -> str:  # never show the client (it holds the key)
        return f"TogetherProvider(base_url={self.base_url!r})"

    # plumbing -------------------------------------------------------------------------
    def _connect(self, key: str) -> Any:
        import together

        return together.Together(api_key=key, base_url=self._address, max_retries=0,
                                 timeout=self._retry.timeout or REQUEST_TIMEOUT_S)

    def _api_errors(self) -> tuple[type[Exception], ErrorMap]:
        import together

        return together.APIError, from_together

    def _job(self, obj: Any, error: dict[str, Any] | None = None) -> Job:
        raw = scrubbed_json(obj, self._key, by_alias=True)
        native = raw.get("status")
        status = status_of(native)
        return Job(id=raw["id"], status=status, native_status=native,
                   base_model=raw.get("model") or "",
                   fine_tuned_model=raw.get("model_output_name"),
                   created_at=timestamp(raw.get("created_at")),
                   finished_at=timestamp(raw.get("updated_at"))
                   if status in ("succeeded", "failed", "cancelled") else None,
                   training_file=raw.get("training_file"),
                   validation_file=raw.get("validation_file") or None,
                   suffix=raw.get("suffix"), trained_tokens=raw.get("token_count"),
                   error=error, raw=raw)

    # files ------------------------------------------------------------------------------
    def upload(self, path: Path) -> FileRef:
        """Check (the SDK's check_file) and upload for fine-tuning, unless this endpoint
        already holds the same bytes."""
        from together.lib.types.error import FileTypeError

        from tunelab.providers.openai_compat import as_jsonl, file_sha256

        sent = as_jsonl(Path(path))
        sha, size = file_sha256(sent), sent.stat().st_size
        reused = self._reuse_upload(sha)
        if reused is not None:
            return reused
        try:
            remote = self._retrying(f"uploading {sent.name}", lambda: self._client.files.upload(
                file=sent, purpose="fine-tune", check=True))
        except FileTypeError as error:
            raise DataError(f"Together refuses the file: {first_line(error, self._key)}",
                            path=str(path),
                            fix=f"run `{command('tunelab', 'data', 'check', path)}`") from None
        with open_registry() as registry:
            registry.record_file(file_id=remote.id, provider=self.name, endpoint=self.base_url,
                                 sha256=sha, filename=sent.name, size=size, purpose="fine-tune")
        return FileRef(id=remote.id, filename=sent.name, bytes=size, sha256=sha)

    def _reuse_upload(self, sha: str) -> FileRef | None:
        from tunelab.providers.cloud_training import reused_upload

        def check(file_id: str) -> FileRef:
            remote = self._retrying(f"checking the earlier upload {file_id}",
                                    lambda: self._client.files.retrieve(file_id))
            return FileRef(id=remote.id, filename=scrub(remote.filename, self._key),
                           bytes=remote.bytes, sha256=sha, reused=True)

        return reused_upload(self.base_url, sha, check)

    # jobs -------------------------------------------------------------------------------
    def describe_request(self, spec: JobSpec) -> dict[str, Any]:
        """The dry run: what would be uploaded (spec's local files) and sent, sending nothing
        (file ids do not exist yet, so the body names them by placeholder)."""
        from tunelab.providers.openai_compat import upload_plans

        sent = replace(spec, training_file="<training file id>",
                       validation_file="<validation file id>" if spec.validation_file else None)
        described = upload_plans(spec)
        # The SDK builds the body (filling Together's defaults) from these arguments after
        # asking the model's limits: a dry run sends nothing, so it shows the arguments.
        described["request"] = {"method": "POST", "url": f"{self.base_url}/v1/fine-tunes",
                                "sdk_call": "together.Together().fine_tuning.create",
                                "arguments": create_arguments(sent, self.settings)}
        return described

    def create_job(self, spec: JobSpec) -> Job:
        arguments = create_arguments(spec, self.settings)
        self._refuse_unaffordable(arguments)
        started = time.time()
        # After an ambiguous failure the answer may be what was lost: adopt the job the
        # lost call made rather than make two.
        return self._job(self._exactly_once("creating the fine-tuning job",
                                            lambda: self._create(arguments),
                                            lambda: self._find_job(arguments, started)))

    def _create(self, arguments: dict[str, Any]) -> Any:
        try:
            return self._client.fine_tuning.create(**arguments)
        except ValueError as error:  # the SDK checks the request against the model's limits
            raise UsageError(f"Together refuses the job: {first_line(error, self._key)}",
                             fix="change the setting it names (see `tunelab train --help`)") \
                from None

    def _refuse_unaffordable(self, arguments: dict[str, Any]) -> None:
        """Together's own estimate (POST /v1/fine-tunes/estimate-price): a job it says the
        account cannot pay for is refused before it is created."""
        method: dict[str, Any] = {"method": arguments["training_method"]}
        if method["method"] == "sft":
            method["train_on_inputs"] = "auto"
        estimate = self._retrying("asking Together for its price estimate",
                                  lambda: self._client.fine_tuning.estimate_price(
                                      training_file=arguments["training_file"],
                                      model=arguments["model"],
                                      n_epochs=arguments.get("n_epochs", 1),
                                      training_method=method))
        if estimate.estimation_available and estimate.allowed_to_proceed is False:
            price = estimate.estimated_total_price
            raise ProviderError(f"Together estimates this job at ${price:,.2f}, over the "
                                f"account's credit limit (${estimate.user_limit or 0:,.2f}); "
                                "nothing was created", code="insufficient_funds",
                                fix="add credit on api.together.ai, or train fewer epochs")

    def _find_job(self, arguments: dict[str, Any], started: float) -> Any:
        for job in self._client.fine_tuning.list().data:
            created = timestamp(job.created_at)
            if job.training_file == arguments["training_file"] and \
                    job.model == arguments["model"] and created is not None and \
                    created >= started - 5:
                return job
        return None

    def get_job(self, job_id: str) -> Job:
        found = self._retrying(f"reading job {job_id}",
                               lambda: self._client.fine_tuning.retrieve(job_id))
        error = None
        if found.status == "error":
            error = self._failure(job_id)
        return self._job(found, error)

    def _failure(self, job_id: str) -> dict[str, Any]:
        """A failed job's reason: its last error event (Together's job has no error field)."""
        for event in reversed(self.list_events(job_id)):
            if event.level == "error" or event.type == "job_error":
                return {"code": event.type, "message": event.message}
        return {"code": "error", "message": "Together reports the job failed, with no reason"}

    def list_jobs(self, limit: int = 20) -> list[Job]:
        page = self._retrying("listing jobs", lambda: self._client.fine_tuning.list())
        jobs = sorted(page.data, key=lambda job: timestamp(job.created_at) or 0, reverse=True)
        return [self._job(job) for job in jobs[:limit]]

    def list_events(self, job_id: str, after: str | None = None) -> list[ProviderEvent]:
        """Events newer than `after`, oldest first: the job's events, then its metrics
        (GET /v1/fine-tunes/ID/metrics) as metrics events. Neither has ids, and both lists
        only grow, so an id counts what was seen of each: event-E-M."""
        seen_events, seen_metrics = _counts(after)
        page = self._retrying(f"reading the events of {job_id}",
                              lambda: self._client.fine_tuning.list_events(job_id))
        rows = self._retrying(f"reading the metrics of {job_id}",
                              lambda: self._client.fine_tuning.list_metrics(job_id))
        events = []
        for number, event in enumerate(page.data, start=1):
            if number <= seen_events:
                continue
            raw = scrubbed_json(event, self._key, by_alias=True)
            level = str(raw.get("level") or "info").removeprefix("legacy_i").removeprefix(
                "legacy_")
            data = {key: raw[key] for key in ("step", "total_steps", "token_count")
                    if raw.get(key) is not None}
            events.append(ProviderEvent(id=f"event-{number:06d}-{seen_metrics:06d}",
                                        created_at=timestamp(raw.get("created_at")) or 0.0,
                                        message=raw.get("message") or "", level=level,
                                        type=raw.get("type") or "message", data=data or None))
        total = len(page.data)
        for number, row in enumerate(rows.metrics or [], start=1):
            values = _metrics(row) if number > seen_metrics else None
            if values:
                shown = ", ".join(f"{key} {value:.4f}" for key, value in values.items()
                                  if key != STEP)
                events.append(ProviderEvent(id=f"event-{total:06d}-{number:06d}",
                                            created_at=time.time(), type="metrics",
                                            message=f"step {values[STEP]}: {shown}",
                                            data=values))
        return events

    def list_checkpoints(self, job_id: str) -> list[Checkpoint]:
        page = self._retrying(f"reading the checkpoints of {job_id}",
                              lambda: self._client.fine_tuning.list_checkpoints(job_id))
        found = []
        for checkpoint in page.data:
            raw = scrubbed_json(checkpoint, self._key, by_alias=True)
            found.append(Checkpoint(job_id=job_id, name=f"{job_id}:{raw['step']}",
                                    kind="step", step=raw.get("step"),
                                    created_at=timestamp(raw.get("created_at")) or 0.0,
                                    path=raw.get("path"), model=raw.get("object_name")))
        return sorted(found, key=lambda checkpoint: checkpoint.step or 0)

    def cancel(self, job_id: str) -> Job:
        self._retrying(f"cancelling {job_id}", lambda: self._client.fine_tuning.cancel(job_id))
        return self.get_job(job_id)

    # chat -------------------------------------------------------------------------------
    def _chat_arguments(self, options: ChatOptions) -> dict[str, Any]:
        arguments = options.openai_arguments()
        if options.repetition_penalty is not None:  # Together's chat takes it too
            arguments["repetition_penalty"] = options.repetition_penalty
        return arguments

    # weights ----------------------------------------------------------------------------
    def download_weights(self, job_id: str, kind: str, dest: Path) -> Path:
        """GET /v1/finetune/download?ft_id=JOB&checkpoint=adapter|merged: one archive,
        unpacked into `dest`. Each retry starts the archive over."""
        if kind not in self.capabilities.weights:
            raise UsageError(f"Together gives weights as adapter or merged, not {kind!r}",
                             fix="pass --kind adapter or --kind merged")
        archive = dest / f".{uuid.uuid4().hex}.download"

        def send() -> None:
            import together

            try:
                with self._client.fine_tuning.with_streaming_response.content(
                        ft_id=job_id, checkpoint=kind) as answer, archive.open("wb") as out:
                    for chunk in answer.iter_bytes(1 << 20):
                        out.write(chunk)
            except transport_errors() as error:  # the stream broke off: the network's fault
                raise together.APIConnectionError(request=error.request) from None

        dest.mkdir(parents=True, exist_ok=True)
        try:
            self._retrying(f"downloading the {kind} of {job_id}", send)
            _unpack(archive, dest)
        finally:
            archive.unlink(missing_ok=True)
        return _weights_folder(dest, kind)


def _counts(after: str | None) -> tuple[int, int]:
    """(events, metric rows) an event id `event-E-M` says were seen; (0, 0) for none."""
    parts = (after or "").split("-")
    if len(parts) == 3 and parts[0] == "event" and parts[1].isdigit() and parts[2].isdigit():
        return int(parts[1]), int(parts[2])
    return 0, 0


# Together's metric names (docs.together.ai/docs/fine-tuning-training-metrics: train/* for
# a training step, eval/* for an evaluation) in the registry's vocabulary.
METRIC_NAMES = {"train/loss": TRAIN_LOSS, "eval/loss": VALID_LOSS}


def _metrics(row: dict[str, Any]) -> dict[str, Any] | None:
    step = row.get("train/global_step", row.get("eval/global_step"))
    values = {ours: row[theirs] for theirs, ours in METRIC_NAMES.items()
              if isinstance(row.get(theirs), int | float)}
    if not isinstance(step, int | float) or not values:
        return None
    return {STEP: int(step), **values}


def _unpack(archive: Path, dest: Path) -> None:
    """A tar archive, zstd- or gzip-compressed or plain (what /finetune/download sends),
    extracted into `dest` with tarfile's data filter: no path leaves `dest`."""
    with archive.open("rb") as raw:
        magic = raw.read(4)
    try:
        if magic == ZSTD_MAGIC:
            import zstandard

            with archive.open("rb") as raw, \
                    zstandard.ZstdDecompressor().stream_reader(raw) as stream, \
                    tarfile.open(fileobj=stream, mode="r|") as tar:
                tar.extractall(dest, filter="data")
        else:
            with tarfile.open(archive, mode="r:*") as tar:
                tar.extractall(dest, filter="data")
    except (tarfile.TarError, OSError, ValueError) as error:
        shutil.rmtree(dest, ignore_errors=True)
        raise ProviderError(f"Together's weights archive does not unpack: {first_line(error)}",
                            code="bad_archive", fix="download it again") from None


def _weights_folder(dest: Path, kind: str) -> Path:
    """The folder of `dest` (itself or one below) holding the adapter or the model config."""
    marker = "adapter_config.json" if kind == "adapter" else "config.json"
    found = sorted(dest.rglob(marker), key=lambda path: len(path.parts))
    if not found:
        raise ProviderError(f"Together's {kind} archive holds no {marker}", code="bad_archive",
                            fix="check the job's training type (a full fine-tune has no "
                                "adapter: pull --kind merged)")
    return found[0].parent


def build(settings: ProviderSettings) -> TogetherProvider:
    """The factory tunelab.providers.PROVIDERS holds for "together"."""
    return TogetherProvider(base_url=settings.base_url, retry=settings.retry,
                            settings=settings.own_as(TogetherSettings))


__all__ = ["TogetherProvider", "TogetherSettings", "build", "create_arguments"]
