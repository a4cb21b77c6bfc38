"""From an OpenAI job request to a local TrainConfig. Everything a client sends is checked
here, before queueing, so a bad request is a 400 now rather than a failed job later.
"""

from __future__ import annotations

from typing import Any

from tunelab.errors import ConfigError, DataError, UsageError
from tunelab.server.errors import ApiError
from tunelab.server.files import UploadedFiles
from tunelab.server.settings import ServeSettings

EVAL_EVERY = 10  # steps between validation losses when the job has a validation file


def _requested_hyperparameters(body: Any) -> dict[str, Any]:
    method = body.method or {}
    if method and method.get("type") not in ("supervised", None):
        raise ApiError(400, f"method.type {method.get('type')!r} is not supported here; "
                       "use 'supervised'", code="unsupported_method", param="method.type")
    supervised = (method.get("supervised") or {}).get("hyperparameters") or {}
    return {**(body.hyperparameters or {}), **supervised}


def _number(hyper: dict[str, Any], name: str) -> Any:
    value = hyper.get(name, "auto")
    return None if value in ("auto", None) else value


def _training_path(files: UploadedFiles, file_id: str | None, param: str) -> str | None:
    if file_id is None:
        return None
    try:
        record = files.get(file_id)
    except ApiError:
        raise ApiError(400, f"{param} {file_id!r} does not exist; upload it first",
                       code="invalid_file", param=param) from None
    if record.purpose != "fine-tune":
        raise ApiError(400, f"{param} {file_id!r} was uploaded with purpose "
                       f"{record.purpose!r}, not 'fine-tune'", code="invalid_file", param=param)
    path = files.data_path(file_id)
    from tunelab.data.reader import load_examples

    try:
        load_examples(path)
    except DataError as error:
        where = f"line {error.line}: " if error.line else ""
        detail = error.message.split(": ", 1)[-1] if error.path else error.message
        raise ApiError(400, f"{param} {file_id}: {where}{detail}", code="invalid_file",
                       param=param) from None
    return str(path)


def _check_model(model: str) -> None:
    from tunelab.local.model_source import resolve_model_dir

    try:
        resolve_model_dir(model)
    except UsageError as error:
        raise ApiError(400, f"model {model!r} is not available on this server: "
                       f"{error.message}", code="model_not_available", param="model") from None


def build_config(body: Any, files: UploadedFiles,
                 settings: ServeSettings) -> tuple[dict[str, Any], dict[str, Any]]:
    """The validated TrainConfig values for a job request, and the hyperparameters to echo."""
    from tunelab.config import TrainConfig, validate_config

    hyper = _requested_hyperparameters(body)
    default_lr = TrainConfig.model_fields["learning_rate"].default
    multiplier = _number(hyper, "learning_rate_multiplier")
    values: dict[str, Any] = {
        "train_file": _training_path(files, body.training_file, "training_file"),
        "validation_file": _training_path(files, body.validation_file, "validation_file"),
        "model": body.model, "suffix": body.suffix, "epochs": _number(hyper, "n_epochs"),
        "batch_size": _number(hyper, "batch_size"), "seed": body.seed,
        "learning_rate": default_lr * multiplier if multiplier is not None else None,
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
    except ConfigError as error:
        raise ApiError(400, "; ".join(error.problems), code="invalid_hyperparameters",
                       param="hyperparameters") from None
    _check_model(body.model)
    resolved = config.model_dump(mode="json")
    echo = {"n_epochs": config.epochs, "batch_size": config.batch_size,
            "learning_rate_multiplier": multiplier if multiplier is not None else 1.0}
    return resolved, echo
