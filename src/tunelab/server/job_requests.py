"""From an OpenAI job request to a local TrainConfig. Everything a client sends is checked
here, before queueing, so a bad request is a 400 now rather than a failed job later.

Cheap checks come first and the training file last:
1. the request's shape and every value in it (JobCreate, by pydantic, before the route
   runs): model name length, hyperparameter types and ranges, suffix, seed, method
   (supervised, or dpo with its beta);
2. the files exist and were uploaded for fine-tuning (registry rows);
3. the resolved TrainConfig, and that the model names one this machine has (no loading);
4. the files' contents, one line at a time with bounded memory (data/stream_check.py), at
   most MAX_FILE_CHECKS at once: past that a client gets a 503 with Retry-After.
"""

from __future__ import annotations

import threading
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tunelab.config import SEED_MAX, TrainConfig, validate_config
from tunelab.data.stream_check import count_examples
from tunelab.errors import ConfigError, DataError, UsageError
from tunelab.server.errors import ApiError
from tunelab.server.files import UploadedFiles
from tunelab.server.settings import ServeSettings

EVAL_EVERY = 10  # steps between validation losses when the job has a validation file
MAX_FILE_CHECKS = 2  # training files read at once; each is a core's worth of JSON parsing
RETRY_AFTER_S = 2
_FIELDS = TrainConfig.model_fields
# The most learning_rate_multiplier may be: TrainConfig's cap on the rate over its default.
MAX_MULTIPLIER = next(rule.le for rule in _FIELDS["learning_rate"].metadata
                      if hasattr(rule, "le")) / _FIELDS["learning_rate"].default


def _like(field: str, kind: type) -> Any:
    """`kind` with the bounds TrainConfig puts on `field` (they stay in one home)."""
    return Annotated[(kind, Field(strict=True), *_FIELDS[field].metadata)]


Auto = Literal["auto"]


class Hyperparameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n_epochs: Auto | _like("epochs", int) | None = None
    batch_size: Auto | _like("batch_size", int) | None = None
    learning_rate_multiplier: Auto | Annotated[
        float, Field(strict=True, gt=0, le=MAX_MULTIPLIER, allow_inf_nan=False)] | None = None


class DpoHyperparameters(Hyperparameters):
    beta: Auto | _like("beta", float) | None = None


class Supervised(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hyperparameters: Hyperparameters | None = None


class Dpo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hyperparameters: DpoHyperparameters | None = None


class Method(BaseModel):
    """OpenAI's `method`: supervised (chat examples) or dpo (preference pairs), trained here
    with TrainConfig.method; any other type is a 400 naming method.type."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["supervised", "dpo"] = "supervised"
    supervised: Supervised | None = None
    dpo: Dpo | None = None

    @model_validator(mode="after")
    def _settings_of_its_type(self) -> Method:
        other = {"supervised": self.dpo, "dpo": self.supervised}[self.type]
        if other is not None:
            raise ValueError(f"method type {self.type!r} takes settings under "
                             f"method.{self.type} only")
        return self

    def hyperparameters(self) -> Hyperparameters | None:
        chosen = self.dpo if self.type == "dpo" else self.supervised
        return chosen.hyperparameters if chosen is not None else None


class JobCreate(BaseModel):
    """OpenAI's job request. Each field's rule is here, so a bad value is a 400 naming it
    before anything else runs."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=256)
    training_file: str = Field(max_length=64)
    validation_file: str | None = Field(None, max_length=64)
    suffix: _like("suffix", str) | None = None
    seed: Annotated[int, Field(strict=True, ge=0, le=SEED_MAX)] | None = None
    hyperparameters: Hyperparameters | None = None
    method: Method | None = None
    metadata: dict[Annotated[str, Field(max_length=64)],
                   Annotated[str, Field(max_length=512)]] | None = Field(None, max_length=16)
    integrations: list[dict[str, Any]] | None = Field(None, max_length=16)


def requested_hyperparameters(body: JobCreate) -> dict[str, Any]:
    """What the client set, in either place OpenAI accepts (method's wins); "auto" is unset."""
    given = {}
    for hyper in (body.hyperparameters, body.method.hyperparameters() if body.method else None):
        if hyper is not None:
            given.update(hyper.model_dump(exclude_none=True))
    return {name: value for name, value in given.items() if value != "auto"}


class FileChecks:
    """Reads uploaded training files for job creation, a few at a time."""

    def __init__(self, files: UploadedFiles, limit: int = MAX_FILE_CHECKS) -> None:
        self.files = files
        self.slots = threading.BoundedSemaphore(limit)

    def record_path(self, file_id: str | None, param: str) -> str | None:
        """The file's path on disk, once its row says it is a fine-tuning upload."""
        if file_id is None:
            return None
        try:
            record = self.files.get(file_id)
        except ApiError:
            raise ApiError(400, f"{param} {file_id!r} does not exist; upload it first",
                           code="invalid_file", param=param) from None
        if record.purpose != "fine-tune":
            raise ApiError(400, f"{param} {file_id!r} was uploaded with purpose "
                           f"{record.purpose!r}, not 'fine-tune'", code="invalid_file",
                           param=param)
        return str(self.files.data_path(file_id))

    def check(self, checks: list[tuple[str, str, str]], method: str = "supervised") -> None:
        """Read each (param, file id, path) through, as data for `method` (chat examples,
        or preference pairs for dpo): a 400 naming the first bad line."""
        if not self.slots.acquire(blocking=False):
            raise ApiError(503, "the server is checking other training files; retry "
                           f"in {RETRY_AFTER_S} s", code="server_busy",
                           headers={"Retry-After": str(RETRY_AFTER_S)})
        try:
            for param, file_id, path in checks:
                _check_file(path, file_id, param, method)
        finally:
            self.slots.release()


def _check_file(path: str, file_id: str, param: str, method: str) -> None:
    try:
        count_examples(path, method=method)
    except DataError as error:
        where = f"line {error.line}: " if error.line else ""
        detail = error.message.split(": ", 1)[-1] if error.path else error.message
        raise ApiError(400, f"{param} {file_id}: {where}{detail}", code="invalid_file",
                       param=param) from None


def _check_model(model: str) -> None:
    """The model is a base model GET /v1/models lists (server/models.py), else a 400."""
    from tunelab.server.models import check_base_model

    try:
        check_base_model(model)
    except UsageError as error:
        raise ApiError(400, error.message, code="model_not_available",
                       param="model") from None


def build_config(body: JobCreate, checks: FileChecks,
                 settings: ServeSettings) -> tuple[TrainConfig, dict[str, Any]]:
    """The validated TrainConfig for a job request, and the hyperparameters to echo."""
    hyper = requested_hyperparameters(body)
    multiplier = hyper.get("learning_rate_multiplier")
    method = body.method.type if body.method else "supervised"
    files = [(param, file_id, checks.record_path(file_id, param))
             for param, file_id in (("training_file", body.training_file),
                                    ("validation_file", body.validation_file)) if file_id]
    paths = {param: path for param, _, path in files}
    values: dict[str, Any] = {
        "train_file": paths["training_file"], "validation_file": paths.get("validation_file"),
        "model": body.model, "suffix": body.suffix, "epochs": hyper.get("n_epochs"),
        "method": method, "beta": hyper.get("beta"),
        "batch_size": hyper.get("batch_size"), "seed": body.seed,
        "learning_rate": _FIELDS["learning_rate"].default * multiplier
        if multiplier is not None else None,
        "max_steps": settings.max_steps, "max_length": settings.max_length,
        # With a validation file, report valid_loss every few steps as OpenAI does, not only
        # at epoch ends (a capped job may never reach one).
        "eval_every": min(EVAL_EVERY, settings.max_steps or EVAL_EVERY)
        if body.validation_file else None,
        "max_samples": 0,  # clients test through /v1/chat/completions themselves
    }
    values = {key: value for key, value in values.items() if value is not None}
    try:
        config = validate_config(values)
    except ConfigError as error:  # the request's own rules passed: a server cap clashed
        raise ApiError(400, "; ".join(error.problems), code="invalid_hyperparameters",
                       param="hyperparameters") from None
    _check_model(body.model)
    checks.check(files, method)  # last: the only step that reads the files
    echo = {"n_epochs": config.epochs, "batch_size": config.batch_size,
            "learning_rate_multiplier": multiplier if multiplier is not None else 1.0}
    if method == "dpo":  # the trainer's default beta when none was asked
        echo["beta"] = config.beta if config.beta is not None else "auto"
    return config, echo
