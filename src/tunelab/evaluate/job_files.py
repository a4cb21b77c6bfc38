"""What the registry knows about the tuned jobs behind the models: their data files.

`compare base JOB` evaluates on the job's validation file by default, and `test`/`chat` talk
to a tuned persona with the system prompt it was trained under.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from tunelab import home
from tunelab.errors import TunelabError, UsageError
from tunelab.evaluate import golden
from tunelab.evaluate.specs import ModelSpec
from tunelab.registry import JobRecord, open_registry
from tunelab.registry.job_config import CloudJob


def default_eval_file(specs: list[ModelSpec]) -> Path:
    """A recorded model's golden set, else the validation file of a tuned job among the
    models, when one was recorded."""
    for spec in specs:
        if spec.is_recorded:
            return golden.load(spec.model).eval_file
    for job in _jobs(specs):
        found = job_file(job, "validation_file")
        if found:
            return found
    raise UsageError("no --eval file given, and no job among the models has a validation file",
                     fix="pass --eval FILE (held-out dialogues, e.g. from `tunelab data split`)")


def training_system_prompt(spec: ModelSpec, share: float = 0.5) -> str | None:
    """The system prompt at least `share` of the job's training examples start with, if
    readable."""
    from tunelab.data.reader import load_examples
    from tunelab.local.prepare import common_system_prompt

    for job in _jobs([spec]):
        found = job_file(job, "training_file")
        if found:
            try:
                return common_system_prompt(load_examples(found), share)
            except TunelabError:  # the data changed since training: no default, no failure
                return None
    return None


def job_file(job: JobRecord, role: Literal["training_file", "validation_file"]) -> Path | None:
    """A job's training_file or validation_file as a readable path: the copy kept here
    (a cloud or imported job's `config.local_files`: a cloud run's source, a pulled file),
    else as recorded."""
    training = role == "training_file"
    kept = None
    if isinstance(job.config, CloudJob):
        files = job.config.local_files
        kept = local_file(files.training_file if training else files.validation_file)
    return kept or local_file(job.training_file if training else job.validation_file)


def local_file(name: str | None) -> Path | None:
    """A recorded data file as a readable path: as given, or the local upload's copy."""
    if not name:
        return None
    path = Path(name).expanduser()
    if path.is_file():
        return path
    uploads = sorted((home.home() / "files").glob(f"{name}.*"))
    return uploads[0] if uploads else None


def _jobs(specs: list[ModelSpec]) -> list[JobRecord]:
    with open_registry() as registry:
        jobs = [registry.find_job(spec.job_id) for spec in specs if spec.job_id]
    return [job for job in jobs if job is not None]
