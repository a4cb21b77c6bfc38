"""What `tunelab migrate` keeps about an old job, in its registry row.

An imported job's config is an ImportedJob (registry/job_config.py): `migrate` holds the
inventory's findings and the pull's files (a MigrateState); `local_files` names the pulled
data by role, as a cloud job tunelab created names its sources (evaluate/job_files.py reads
it). A replacement job links back through its `metadata`: `retrain_of` (the old job id) and
`replaces` (the old model name, which `tunelab serve` answers to).
"""

from __future__ import annotations

from typing import Any

from tunelab.errors import NotFoundError
from tunelab.registry import JobRecord, Registry
from tunelab.registry.job_config import (
    IMPORTED,
    CloudJob,
    ImportedJob,
    LocalFiles,
    MigrateState,
)

RETRAIN_OF = "retrain_of"
REPLACES = "replaces"


def imported(job: JobRecord) -> ImportedJob:
    """The job's import record: empty for a job not imported yet; a cloud job tunelab
    created keeps what it asked and its sources."""
    if isinstance(job.config, ImportedJob):
        return job.config
    if isinstance(job.config, CloudJob):
        return ImportedJob(**dict(job.config))
    return ImportedJob()


def migrate_state(job: JobRecord) -> MigrateState:
    return imported(job).migrate


def local_files(job: JobRecord) -> LocalFiles:
    return imported(job).local_files


def is_inventoried(job: JobRecord) -> bool:
    return isinstance(job.config, ImportedJob)


def save_state(registry: Registry, job: JobRecord, *, local_files: LocalFiles | None = None,
               **changes: Any) -> JobRecord:
    """Merge `changes` into the job's migrate state, and replace its local files when given
    (one row update)."""
    config = imported(job)
    state = MigrateState.model_validate({**dict(config.migrate), **changes})
    update: dict[str, Any] = {"migrate": state}
    if local_files is not None:
        update["local_files"] = local_files
    return registry.update_job(job.id, config=config.model_copy(update=update))


def find_old_job(registry: Registry, token: str) -> JobRecord:
    """The inventoried job behind a job id or a fine-tuned model name."""
    job = registry.find_job(token) or registry.find_job_by_model(token)
    if job is None or not is_inventoried(job):
        raise NotFoundError(f"{token} is not in the inventory",
                            fix="run `tunelab migrate inventory` first, then name a job id "
                                "or ft: model it lists")
    return job


def replacements(registry: Registry, old_job_id: str) -> list[JobRecord]:
    """Jobs trained to replace `old_job_id`, newest first."""
    return [job for job in registry.list_jobs(limit=100_000)
            if (job.metadata or {}).get(RETRAIN_OF) == old_job_id]


def inventoried_jobs(registry: Registry) -> list[JobRecord]:
    return registry.list_jobs(limit=100_000, kind=IMPORTED)
