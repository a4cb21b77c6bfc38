"""What the server can answer with: its models and checkpoints, as OpenAI objects.

The catalogue built here is also the only set of names a client may send as a chat `model`
(issue 13): a name is looked up in it, never resolved as a path or hub id, so a client reaches
no file the registry did not record. It holds, in the order GET /v1/models lists them:

    the embedded base model            DEFAULT_MODEL
    each succeeded local fine-tune     its `ft:` name (newest first)
    each one's checkpoints             `{ft name}:ckpt-{checkpoint}`, newest first, as the
                                       checkpoints route names them; OpenAI lists checkpoint
                                       models as models too
    registry aliases                   a succeeded job's metadata["replaces"] (set by
                                       `tunelab migrate retrain`): the old model it stands in for
    --alias OLD=TARGET                 TARGET is any name above or a local job id
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tunelab.errors import TunelabError, UsageError
from tunelab.local.weights import Weights, of_job, resolve
from tunelab.registry import Checkpoint, JobRecord, Registry
from tunelab.registry.metrics import TRAIN_LOSS, VALID_LOSS

REPLACES = "replaces"  # the job metadata key naming the old model a job stands in for
LOCAL = "local"
JOB_LIMIT = 1000


@dataclass(frozen=True)
class Served:
    """One name a client may chat with, and where its weights are (from the registry)."""

    id: str
    created: int
    job: JobRecord | None = None  # None: the embedded base model
    checkpoint_dir: str | None = None  # a checkpoint's folder, as the trainer recorded it
    alias_of: str | None = None  # the served name this old name stands in for

    def object(self) -> dict[str, Any]:
        return {"id": self.id, "object": "model", "created": self.created,
                "owned_by": "tunelab"}

    def weights(self) -> Weights:
        from tunelab.local.model_source import DEFAULT_MODEL

        if self.checkpoint_dir is not None:
            return resolve(self.checkpoint_dir)  # a folder the registry recorded, not a client's
        if self.job is not None:
            return of_job(self.job, self.id)
        return resolve(DEFAULT_MODEL)


def base_models() -> tuple[str, ...]:
    """The base models a client may fine-tune or chat with: the embedded one. A job's
    `model` over HTTP is one of these names, never a path or hub id (issue 13)."""
    from tunelab.local.model_source import DEFAULT_MODEL

    return (DEFAULT_MODEL,)


def check_base_model(model: str) -> None:
    """UsageError unless `model` is a base model `base_models` lists and its files are here:
    found, not loaded or converted. Any other name (a path, a hub id, a folder with a
    config.json) gets the same message, so a client learns nothing about the server's disk.
    The API's job requests and the dashboard's new-run form both ask this."""
    from tunelab.local.model_source import locate, model_dir

    try:
        if model not in base_models():
            raise UsageError("not a base model this server lists")
        location = locate(model)
        if location.suffix != ".gguf":
            model_dir(location)
    except (UsageError, OSError):
        raise UsageError(f"model {model[:80]!r} is not available on this server: GET "
                         "/v1/models lists the base models you can fine-tune here") from None


def tuned_name(job: JobRecord) -> str:
    """A job's model name; before it has one, the name its checkpoints are listed under."""
    return job.fine_tuned_model or f"ft:{job.base_model}:{job.suffix or ''}:{job.id}"


def checkpoint_objects(registry: Registry, job: JobRecord) -> list[dict[str, Any]]:
    """The job's checkpoints as OpenAI checkpoint objects, newest first."""
    return [{
        "object": "fine_tuning.job.checkpoint",
        "id": f"ftckpt-{job.id[6:]}-{checkpoint.name}",
        "created_at": int(checkpoint.created_at), "fine_tuning_job_id": job.id,
        "fine_tuned_model_checkpoint": checkpoint_model(job, checkpoint),
        "step_number": checkpoint.step or 0,
        "metrics": {"step": checkpoint.step,
                    TRAIN_LOSS: (checkpoint.metrics or {}).get(TRAIN_LOSS),
                    VALID_LOSS: (checkpoint.metrics or {}).get(VALID_LOSS)},
    } for checkpoint in _saved_checkpoints(registry, job)]


def checkpoint_model(job: JobRecord, checkpoint: Checkpoint) -> str:
    """The model name a checkpoint answers to, in chat as in the checkpoints route."""
    return f"{tuned_name(job)}:ckpt-{checkpoint.name}"


def catalogue(registry: Registry, aliases: tuple[tuple[str, str], ...] = ()) -> dict[str, Served]:
    """Every name a client may chat with, in listing order (see the module docstring)."""
    found = {name: Served(name, 0) for name in base_models()}
    by_job_id, replaced = {}, []
    for job in _tuned_jobs(registry):
        served = Served(tuned_name(job), int(job.created_at), job)
        found.setdefault(served.id, served)
        by_job_id[job.id] = served
        for checkpoint in _checkpoints(registry, job):
            found.setdefault(checkpoint.id, checkpoint)
        old = (job.metadata or {}).get(REPLACES)
        if old:
            replaced.append((old, served))
    for old, served in replaced:  # newest first: the newest replacement of a name wins
        found.setdefault(old, replace(served, id=old, alias_of=served.id))
    for old, target in aliases:  # the operator's word beats the registry's
        served = found.get(target) or by_job_id.get(target) or _operator_file(old, target)
        if served is not None and (old not in found or found[old].alias_of is not None):
            found[old] = replace(served, id=old, alias_of=served.alias_of or served.id)
    return found


def _operator_file(name: str, target: str) -> Served | None:
    """A model file or folder the operator named on the command line (an exported .gguf, a
    merged folder): served under `name` only; a client can never name a path itself."""
    path = Path(target).expanduser()
    return Served(name, 0, checkpoint_dir=str(path.resolve())) if path.exists() else None


def check_aliases(registry: Registry, aliases: tuple[tuple[str, str], ...]) -> None:
    """Refuse, when the server starts, an alias whose target it cannot serve or whose name
    already means a model (an old name the registry maps may be re-pointed)."""
    known = catalogue(registry)
    job_ids = {served.job.id for served in known.values() if served.job is not None}
    for old, target in aliases:
        if old in known and known[old].alias_of is None:
            raise UsageError(f"--alias {old}={target}: {old!r} already names a model served "
                             "here", fix="alias a name that GET /v1/models does not list")
        if _operator_file(old, target) is not None:
            _check_loadable(old, target)
        elif target not in known and target not in job_ids:
            raise UsageError(f"--alias {old}={target}: no succeeded local job or served model "
                             f"{target!r}", fix="name a job id or a model from "
                                                "`tunelab jobs list` (status succeeded)")


def _check_loadable(old: str, target: str) -> None:
    try:
        resolve(str(Path(target).expanduser().resolve()))
    except TunelabError as error:
        raise UsageError(f"--alias {old}={target}: {error.message}",
                         fix="name a model file or folder: an exported .gguf, a merged or "
                             "adapter folder") from None


def _tuned_jobs(registry: Registry) -> list[JobRecord]:
    # Any local job with a run folder, whoever started it (the CLI or this server).
    return [job for job in registry.list_jobs(provider=LOCAL, limit=JOB_LIMIT)
            if job.status == "succeeded" and job.fine_tuned_model and job.run_dir]


def _checkpoints(registry: Registry, job: JobRecord) -> list[Served]:
    return [Served(checkpoint_model(job, checkpoint), int(checkpoint.created_at), job,
                   checkpoint.path)
            for checkpoint in _saved_checkpoints(registry, job) if checkpoint.path]


def _saved_checkpoints(registry: Registry, job: JobRecord) -> list[Checkpoint]:
    """Newest first, without the `latest` and `best` pointers (they name a real one)."""
    return [checkpoint for checkpoint in registry.list_checkpoints(job.id)[::-1]
            if "points_to" not in (checkpoint.metrics or {})]
