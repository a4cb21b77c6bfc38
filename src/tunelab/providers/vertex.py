"""Vertex AI supervised tuning of Gemini: google-genai (vertexai=True) plus Cloud Storage.

The dataset goes to `gs://BUCKET/tunelab/<sha256>.jsonl` in Gemini's format (named by the
hash of the converted bytes, so an identical dataset is never uploaded twice); the job is
created with `client.tunings.tune`; the tuned model is the job's `tunedModel.endpoint`,
which `chat` calls with `generate_content`. Vertex has no event stream, so `list_events`
derives events from the job's timestamps, state and `tuningDataStats`.

Credentials are Application Default Credentials (google.auth.default); the project comes
from --project-id, else GOOGLE_CLOUD_PROJECT, else the ADC file. Its own settings (project,
region, bucket, adapter size) are `VertexSettings`: their fields are its flags. SDK errors
become ours in tunelab.providers.sdk_errors (`google_errors`): code and first line of
message, never a token.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tunelab.data.gemini import (
    PreparedFile,
    adapter_size_enum,
    check_validation_size,
    limits_for,
    openai_to_gemini,
    prepare_file,
)
from tunelab.errors import (
    NotFoundError,
    ProviderError,
    TransientProviderError,
    UsageError,
    command,
)
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
from tunelab.providers.sdk_errors import google_errors
from tunelab.providers.vertex_jobs import (
    checkpoints_from_job,
    events_from_job,
    job_from_sdk,
    map_status,
)

__all__ = ["VertexOptions", "VertexProvider", "VertexSettings", "build", "create",
           "describe_request", "map_status"]

NAME = "vertex"
DEFAULT_LOCATION = "us-central1"
OBJECT_PREFIX = "tunelab/"
SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
TIMEOUT_MS = 120_000
TOKEN_ESTIMATE = ("o200k_base (tiktoken) as a proxy: Gemini's tokenizer is not available "
                  "offline; both are ~200k-entry multilingual vocabularies")
_RESOURCE = re.compile(r"^projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/")
_DEFAULT_HOST = re.compile(r"^https://[a-z0-9-]*aiplatform\.googleapis\.com/?$")

# ---- options --------------------------------------------------------------------------------

class VertexSettings(BaseModel):
    """Vertex's own settings, as given: each field is a flag (`--project-id`, ...) of the
    commands that start jobs, under "Vertex AI" in their --help. None: the environment's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    project_id: str | None = Field(
        None, description="GCP project (default: GOOGLE_CLOUD_PROJECT, then the ADC file).")
    location: str | None = Field(
        None, description=f"Region (default: GOOGLE_CLOUD_LOCATION, then {DEFAULT_LOCATION}).")
    bucket: str | None = Field(None, description="GCS bucket for the data (B or gs://B).")
    adapter_size: int | None = Field(
        None, description="LoRA adapter size: 1, 2, 4, 8 or 16 as the model allows "
                          "(default: Vertex's).")


@dataclass(frozen=True)
class VertexOptions:
    """Where to tune: flags first, then GOOGLE_CLOUD_PROJECT / GOOGLE_CLOUD_LOCATION."""

    project_id: str | None = None
    bucket: str | None = None
    location: str = DEFAULT_LOCATION
    base_url: str | None = None  # a local stand-in for Vertex (tests, proxies)
    timeout: float | None = None  # --timeout: seconds for one request (default TIMEOUT_MS)
    adapter_size: int | None = None  # the provider's own setting (--adapter-size)

    @classmethod
    def resolve(cls, *, project_id: str | None = None, bucket: str | None = None,
                location: str | None = None, base_url: str | None = None,
                timeout: float | None = None, adapter_size: int | None = None) -> VertexOptions:
        if base_url and _DEFAULT_HOST.match(base_url):
            base_url = None  # the real service: let the SDK pick the regional host
        return cls(project_id=project_id or os.environ.get("GOOGLE_CLOUD_PROJECT") or None,
                   bucket=(bucket or "").removeprefix("gs://").strip("/") or None,
                   location=location or os.environ.get("GOOGLE_CLOUD_LOCATION")
                   or DEFAULT_LOCATION,
                   base_url=base_url, timeout=timeout, adapter_size=adapter_size)

    def require_project(self) -> str:
        if not self.project_id:
            raise UsageError("no Google Cloud project given",
                             fix="pass --project-id P or set GOOGLE_CLOUD_PROJECT")
        return self.project_id

    def require_bucket(self) -> str:
        if not self.bucket:
            raise UsageError("no Cloud Storage bucket given for the dataset",
                             fix="pass --bucket B (create it once with `gsutil mb gs://B`)")
        return self.bucket

    @property
    def api_root(self) -> str:
        """The host the SDK talks to: regional, or the global one for location "global"."""
        region = "" if self.location == "global" else f"{self.location}-"
        return (self.base_url or f"https://{region}aiplatform.googleapis.com").rstrip("/")


def gcs_uri(bucket: str, prepared: PreparedFile) -> str:
    """Where a converted dataset lives: named by its hash, so equal data is stored once."""
    return f"gs://{bucket}/{object_name(prepared)}"


def object_name(prepared: PreparedFile) -> str:
    return f"{OBJECT_PREFIX}{prepared.sha256}.jsonl"


# ---- the request ----------------------------------------------------------------------------

@dataclass(frozen=True)
class TuningRequest:
    """One supervised tuning job, checked; the same values feed the SDK and the dry run."""

    base_model: str
    training_uri: str
    validation_uri: str | None = None
    epochs: int | None = None
    learning_rate_multiplier: float | None = None
    adapter_size: str | None = None  # ADAPTER_SIZE_*
    display_name: str | None = None

    @classmethod
    def from_spec(cls, spec: JobSpec, options: VertexOptions) -> TuningRequest:
        limits_for(spec.base_model)
        size, multiplier = options.adapter_size, spec.learning_rate
        if spec.epochs is not None and spec.epochs < 1:
            raise UsageError(f"--epochs {spec.epochs} must be at least 1", fix="pass --epochs 3")
        if multiplier is not None and multiplier <= 0:
            raise UsageError(f"--learning-rate-multiplier {multiplier} must be positive",
                             fix="pass a value such as 1.0")
        if spec.suffix and len(spec.suffix) > 128:
            raise UsageError("--suffix is longer than Vertex's 128 characters",
                             fix="pass a shorter --suffix")
        return cls(base_model=spec.base_model, training_uri=spec.training_file,
                   validation_uri=spec.validation_file, epochs=spec.epochs,
                   learning_rate_multiplier=multiplier,
                   adapter_size=adapter_size_enum(spec.base_model, int(size)) if size else None,
                   display_name=spec.suffix)

    def path(self, options: VertexOptions) -> str:
        return f"projects/{options.require_project()}/locations/{options.location}/tuningJobs"

    def body(self) -> dict[str, Any]:
        """The REST JSON that client.tunings.tune POSTs for this request."""
        hyper = {"epochCount": self.epochs, "learningRateMultiplier":
                 self.learning_rate_multiplier, "adapterSize": self.adapter_size}
        spec: dict[str, Any] = {"trainingDatasetUri": self.training_uri}
        if self.validation_uri:
            spec["validationDatasetUri"] = self.validation_uri
        hyper = {key: value for key, value in hyper.items() if value is not None}
        if hyper:
            spec["hyperParameters"] = hyper
        body: dict[str, Any] = {"baseModel": self.base_model, "supervisedTuningSpec": spec}
        if self.display_name:
            body["tunedModelDisplayName"] = self.display_name
        return body

    def sdk_arguments(self) -> dict[str, Any]:
        from google.genai import types

        config = types.CreateTuningJobConfig(
            epoch_count=self.epochs, learning_rate_multiplier=self.learning_rate_multiplier,
            adapter_size=self.adapter_size, tuned_model_display_name=self.display_name,
            validation_dataset=types.TuningValidationDataset(gcs_uri=self.validation_uri)
            if self.validation_uri else None)
        return {"base_model": self.base_model,
                "training_dataset": types.TuningDataset(gcs_uri=self.training_uri),
                "config": config}


def describe_request(spec: JobSpec, options: VertexOptions) -> dict[str, Any]:
    """What `train --dry-run` shows: the object path, the first converted example and the
    exact tuning request. Reads the spec's local files only; sends nothing, needs no
    credentials."""
    bucket = options.require_bucket()
    training = prepare_file(Path(spec.training_file))
    validation = None
    if spec.validation_file and Path(spec.validation_file).is_file():  # else a URI: kept
        validation = prepare_file(Path(spec.validation_file))
        check_validation_size(validation.examples, spec.base_model)
    request = TuningRequest.from_spec(replace(
        spec, training_file=gcs_uri(bucket, training),
        validation_file=gcs_uri(bucket, validation) if validation else spec.validation_file),
        options)
    return {
        "provider": NAME,
        "project": options.require_project(),
        "location": options.location,
        "object": gcs_uri(bucket, training),
        "examples": training.examples,
        "bytes": len(training.data),
        "limits": {**asdict(limits_for(spec.base_model)), "token_estimate": TOKEN_ESTIMATE},
        "validation_object": gcs_uri(bucket, validation) if validation else spec.validation_file,
        "first_example": training.first,
        "request": {"method": "POST", "url": f"{options.api_root}/v1beta1/"
                                             f"{request.path(options)}", "body": request.body()},
    }


# ---- the provider ---------------------------------------------------------------------------

class VertexProvider:
    """Gemini supervised tuning on Vertex AI. Nothing touches the network until a call."""

    name = NAME
    capabilities = Capabilities(
        fine_tuning=True, chat=True, files=True, methods=frozenset({"supervised"}),
        methods_note="tunelab's Vertex path sends Gemini's supervised format only")

    def __init__(self, options: VertexOptions) -> None:
        self.options = options
        self.base_url = options.api_root
        self._credentials: Any = None
        self._adc_project: str | None = None
        self._clients: dict[tuple[str, str], Any] = {}
        self._examples: dict[str, int] = {}  # uploaded URI -> example count (validation check)
        # The job get_job last fetched: the list_events right after it (a watch poll) uses
        # it once instead of fetching again, so both describe the same moment.
        self._snapshot: tuple[float, Job] | None = None

    def __repr__(self) -> str:
        return f"VertexProvider(location={self.options.location!r}, base_url={self.base_url!r})"

    # plumbing -------------------------------------------------------------------------------
    def _adc(self) -> Any:
        if self._credentials is None:
            import google.auth

            # Its "no project ID" and "end user credentials" notices are not errors here:
            # --project-id may name the project, and gcloud's login is what we advise.
            with google_errors("credentials"), _quiet("google.auth._default"), \
                    warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._credentials, self._adc_project = google.auth.default(scopes=SCOPES)
        return self._credentials

    def _project(self) -> str:
        self._adc()
        return VertexOptions.resolve(
            project_id=self.options.project_id or self._adc_project).require_project()

    def _client(self, resource: str | None = None) -> Any:
        """A genai client for the project and location a resource name lives in."""
        from google import genai
        from google.genai import types

        match = _RESOURCE.match(resource or "")
        project, location = (match["project"], match["location"]) if match else \
            (self._project(), self.options.location)
        key = (project, location)
        if key not in self._clients:
            timeout = int(self.options.timeout * 1000) if self.options.timeout else TIMEOUT_MS
            options = types.HttpOptions(base_url=self.options.base_url, timeout=timeout)
            self._clients[key] = genai.Client(vertexai=True, project=project, location=location,
                                              credentials=self._adc(), http_options=options)
        return self._clients[key]

    def describe_request(self, spec: JobSpec) -> dict[str, Any]:
        """The dry run for these options (see the module-level describe_request)."""
        return describe_request(spec, self.options)

    # files ----------------------------------------------------------------------------------
    def upload(self, path: Path) -> FileRef:
        """Convert to Gemini JSONL and put it at gs://BUCKET/tunelab/<sha256>.jsonl, unless
        that object is already there."""
        bucket_name = self.options.require_bucket()
        prepared = prepare_file(Path(path))
        uri = gcs_uri(bucket_name, prepared)
        with google_errors(f"gs://{bucket_name}"):
            reused = self._put_once(bucket_name, prepared)
        self._examples[uri] = prepared.examples
        return FileRef(id=uri, filename=Path(path).name, bytes=len(prepared.data),
                       sha256=prepared.sha256, reused=reused)

    def _put_once(self, bucket_name: str, prepared: PreparedFile) -> bool:
        """Upload unless present; True when the object already existed."""
        from google.api_core.exceptions import PreconditionFailed
        from google.cloud import storage

        client = storage.Client(project=self._project(), credentials=self._adc())
        blob = client.bucket(bucket_name).blob(object_name(prepared))
        if blob.exists():
            return True
        try:
            # if_generation_match=0: only create, so a racing identical upload is not redone.
            blob.upload_from_string(prepared.data, content_type="application/jsonl",
                                    if_generation_match=0)
        except PreconditionFailed:
            return True
        return False

    # jobs -----------------------------------------------------------------------------------
    def create_job(self, spec: JobSpec) -> Job:
        request = TuningRequest.from_spec(spec, self.options)
        count = self._examples.get(spec.validation_file or "")
        if count is not None:
            check_validation_size(count, spec.base_model)
        started = time.time()
        try:
            with google_errors("creating the tuning job"):
                return job_from_sdk(self._client().tunings.tune(**request.sdk_arguments()))
        except TransientProviderError as error:
            # The request may have reached Vertex and only the answer been lost: adopt the
            # job it made rather than leave it unrecorded (or create a second one).
            found = self._find_created(request, started)
            if found is None:
                said = error.message.removeprefix(f"[{error.code}] ")
                raise ProviderError(f"{said}; no tuning job was found for it",
                                    code=error.code, fix="check `tunelab jobs list --provider "
                                    "vertex`, then run the same command again") from None
            return found

    def _find_created(self, request: TuningRequest, started: float) -> Job | None:
        for job in self.list_jobs(limit=50):
            if (job.training_file, job.base_model, job.suffix) == \
                    (request.training_uri, request.base_model, request.display_name) \
                    and (job.created_at or 0) >= started - 120:  # allow for clock skew
                return job
        return None

    def get_job(self, job_id: str) -> Job:
        job = self._fetch(job_id)
        self._snapshot = (time.monotonic(), job)
        return job

    def _fetch(self, job_id: str) -> Job:
        with google_errors(f"job {job_id}"):
            return job_from_sdk(self._client(job_id).tunings.get(name=_job_name(job_id)))

    def list_jobs(self, limit: int = 20) -> list[Job]:
        with google_errors("listing tuning jobs"):
            pager = self._client().tunings.list(config={"page_size": min(limit, 100)})
            jobs = []
            for tuning_job in pager:
                jobs.append(job_from_sdk(tuning_job))
                if len(jobs) >= limit:
                    break
        return jobs

    def list_events(self, job_id: str, after: str | None = None) -> list[ProviderEvent]:
        snapshot, self._snapshot = self._snapshot, None
        fresh = snapshot and snapshot[1].id == job_id and time.monotonic() - snapshot[0] < 10
        events = events_from_job(snapshot[1] if fresh else self._fetch(job_id))
        ids = [event.id for event in events]
        return events[ids.index(after) + 1:] if after in ids else events

    def list_checkpoints(self, job_id: str) -> list[Checkpoint]:
        """The intermediate checkpoints Vertex keeps for a job (each with its own endpoint)."""
        return checkpoints_from_job(self._fetch(job_id))

    def cancel(self, job_id: str) -> Job:
        with google_errors(f"cancelling {job_id}"):
            self._client(job_id).tunings.cancel(name=_job_name(job_id))
        return self._fetch(job_id)

    # chat -----------------------------------------------------------------------------------
    def chat(self, model: str, messages: list[dict[str, Any]],
             options: ChatOptions = ChatOptions()) -> Reply:
        """One reply from a tuned endpoint, a tuning job's endpoint, or a base Gemini model."""
        from google.genai import types

        target = self._chat_target(model)
        record = openai_to_gemini({"messages": messages})
        system = record.get("systemInstruction")
        config = types.GenerateContentConfig(
            system_instruction={"parts": system["parts"]} if system else None,
            temperature=options.temperature, top_p=options.top_p,
            max_output_tokens=options.max_tokens, seed=options.seed)
        started = time.perf_counter()
        with google_errors(f"model {target}"):
            answer = self._client(target).models.generate_content(
                model=target, contents=record["contents"], config=config)
        usage = answer.usage_metadata
        return Reply(text=answer.text or "", model=target,
                     latency_s=time.perf_counter() - started,
                     prompt_tokens=usage.prompt_token_count if usage else None,
                     completion_tokens=usage.candidates_token_count if usage else None)

    def download_weights(self, job_id: str, kind: str, dest: Path) -> Path:
        raise no_weights(self.name)  # a tuned Gemini lives behind its endpoint only

    def _chat_target(self, model: str) -> str:
        if "/tuningJobs/" not in model:
            return model
        job = self._fetch(model)
        if not job.fine_tuned_model:
            raise UsageError(f"job {model} has no tuned endpoint yet ({job.native_status})",
                             fix=f"wait for it: `{command('tunelab', 'jobs', 'watch', model)}`")
        return job.fine_tuned_model


@contextlib.contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    """Silence a library logger's warnings for a moment (Python would print them bare)."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _job_name(job_id: str) -> str:
    if not _RESOURCE.match(job_id) or "/tuningJobs/" not in job_id:
        raise NotFoundError(f"{job_id!r} is not a Vertex tuning job name",
                            fix="use projects/P/locations/L/tuningJobs/N "
                                "(see `tunelab jobs list --provider vertex`)")
    return job_id


def create(*, base_url: str | None = None, project_id: str | None = None,
           bucket: str | None = None, location: str | None = None,
           timeout: float | None = None, adapter_size: int | None = None) -> VertexProvider:
    """A Vertex provider from its flags (tests and callers that hold no settings object)."""
    return VertexProvider(VertexOptions.resolve(project_id=project_id, bucket=bucket,
                                                location=location, base_url=base_url,
                                                timeout=timeout, adapter_size=adapter_size))


def build(settings: ProviderSettings) -> VertexProvider:
    """The factory tunelab.providers.PROVIDERS holds for "vertex"."""
    return create(base_url=settings.base_url, timeout=settings.retry.timeout,
                  **settings.own_as(VertexSettings).model_dump())
