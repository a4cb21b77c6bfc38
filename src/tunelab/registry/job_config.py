"""What a job's registry row keeps about how it was made: one typed schema per kind of job.

    kind       JobRecord.config   written by
    local      TrainConfig        a run trained on this machine (`tunelab train`, a sweep
                                  trial, a job of the server's API or dashboard): the
                                  resolved config it ran with (local/orchestrator.py,
                                  runs/local.py)
    cloud      CloudJob           a job tunelab created on a provider: what it asked, the
                                  cost it expected, the local files it uploaded
                                  (runs/cloud.py through providers/cloud_training.py)
    imported   ImportedJob        a provider's job that `tunelab migrate inventory` found (a
                                  cloud job of ours included): a CloudJob, plus what each
                                  migrate step learned (MigrateState) and the pulled data
    -          None               a row that keeps nothing

The kind is a column of its own (jobs.config_kind, migration 4), beside config_json, which
holds the schema's `model_dump` in the same shape as before there were kinds. A column
rather than a key inside the JSON: TrainConfig forbids keys it does not declare (a "kind" in
it would be popped before every parse and put back after every dump), `jobs show --json`
prints the config exactly as the schema dumps it, SQL can pick the rows of one kind
(`Registry.list_jobs(kind=...)`), and the migration adds a column without rewriting any
row's JSON, so a damaged row stays exactly as damaged (and skipped) as it was.

`parse` runs once, where a row is read (Registry), and `dump` where one is written; readers
use attributes (`job.config.local_files.training_file`) and `isinstance` or `job.kind`.
"""

from __future__ import annotations

import json
from typing import Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, ValidationError

from tunelab.config import TrainConfig

JobKind: TypeAlias = Literal["local", "cloud", "imported"]
LOCAL: JobKind = "local"
CLOUD: JobKind = "cloud"
IMPORTED: JobKind = "imported"


class _Record(BaseModel):
    """A recorded value: every key declared (a typo is an error, not a silent None)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class LocalFiles(_Record):
    """The job's data as files on this machine: a cloud run's sources, or a pull's copies
    (evaluate/job_files.py prefers them to the provider's file ids)."""

    training_file: str | None = None
    validation_file: str | None = None


class CloudHyperparameters(_Record):
    """What tunelab asked the provider for; None: left to the provider."""

    n_epochs: int | None = None
    learning_rate: float | None = None  # the provider's multiplier (OpenAI's)
    batch_size: int | None = None
    beta: float | None = None  # DPO's


class CloudJob(_Record):
    """A job on a provider, as tunelab created it (all None for one first seen on a refresh)."""

    method: str | None = None  # config.MethodName: supervised or dpo
    hyperparameters: CloudHyperparameters | None = None
    seed: int | None = None
    estimated_cost: dict[str, Any] | None = None  # data/cost.py CostRow.as_dict(), at creation
    local_files: LocalFiles = LocalFiles()


# What `tunelab migrate` learns about an imported job, step by step (migrate/state.py).
class ImportedCheckpoint(_Record):
    id: str
    step: int | None = None
    model: str | None = None


class PulledFile(_Record):
    """One file `migrate pull` keeps in the blob store (migrate/blobs.py), whole."""

    role: str  # training_file, validation_file or result_file
    sha256: str
    path: str
    bytes: int


class FileCheck(_Record):
    """The data doctor's verdict on a pulled data file."""

    ok: bool
    examples: int
    errors: int
    warnings: int
    first_error: str | None = None
    format: str | None = None  # chat (examples) or preference (DPO pairs); None: unreadable


class HeldOut(_Record):
    """The slice of training data `migrate pull` held out when the job had no validation
    file (data/split.py's result)."""

    examples: int
    train: int
    val: int
    train_file: str
    val_file: str
    seed: int


class MigrateState(_Record):
    inventoried_at: float | None = None
    # The provider job's training method (OpenAI's method.type: supervised, dpo); its beta
    # is among the job's hyperparameters, with n_epochs and the others.
    method: str | None = None
    shutdown: str | None = None  # YYYY-MM-DD, when the model stops answering
    days_left_source: str | None = None
    result_files: list[str] = []
    checkpoints: list[ImportedCheckpoint] = []
    pulled: dict[str, PulledFile] = {}  # by the provider's file id
    pulled_at: float | None = None
    checks: dict[str, FileCheck] = {}  # by the provider's file id
    held_out: HeldOut | None = None


class ImportedJob(CloudJob):
    """A provider's job imported by `tunelab migrate inventory`. A CloudJob: one tunelab
    created and inventoried later keeps what it asked; a foreign one has None there."""

    migrate: MigrateState = MigrateState()


JobConfig: TypeAlias = TrainConfig | CloudJob | ImportedJob


def kind_of(config: JobConfig) -> JobKind:
    if isinstance(config, ImportedJob):  # first: an ImportedJob is a CloudJob too
        return IMPORTED
    if isinstance(config, CloudJob):
        return CLOUD
    if isinstance(config, TrainConfig):
        return LOCAL
    raise TypeError(f"a job's config is a TrainConfig, CloudJob or ImportedJob, not "
                    f"{type(config).__name__}")


def as_dict(config: JobConfig | None) -> dict[str, Any]:
    """The config as JSON values ({} for none): what `jobs show` prints and `jobs compare`
    diffs key by key."""
    return config.model_dump(mode="json") if config is not None else {}


def dump(config: JobConfig | None) -> tuple[JobKind | None, str]:
    """The row's (config_kind, config_json)."""
    if config is None:
        return None, "{}"
    return kind_of(config), json.dumps(as_dict(config))


def parse(kind: str | None, raw: str | None) -> JobConfig | None:
    """The typed config of a row; ValueError (the registry's "damaged row") when the JSON
    does not parse or does not fit its kind."""
    data = json.loads(raw) if raw else None
    if kind is None:
        if data:
            raise ValueError("a config with no kind")
        return None
    if not isinstance(data, dict):
        raise ValueError(f"a {kind} config is not a JSON object")
    if kind == LOCAL:
        return _train_config(data)
    if kind == CLOUD:
        return CloudJob.model_validate(data)
    if kind == IMPORTED:
        return ImportedJob.model_validate(data)
    raise ValueError(f"unknown config kind {kind!r}")


def _train_config(data: dict[str, Any]) -> TrainConfig:
    try:
        return TrainConfig.model_validate(data)
    except ValidationError:
        # Written by an older tunelab whose bounds were looser (a seed past SEED_MAX): the
        # run happened, so its row stays readable with the values it ran with; a resume
        # validates them again (resolve_config) and names what is wrong then.
        return TrainConfig.model_construct(**{key: value for key, value in data.items()
                                              if key in TrainConfig.model_fields})
