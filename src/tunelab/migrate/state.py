"""What `tunelab migrate` keeps about an old job, in its registry row.

An imported job's `config["migrate"]` holds the inventory's findings and the pull's files;
`config["local_files"]` names the pulled data by role, as a job trained from this machine
names its own (evaluate/job_files.py reads it). A replacement job links back through its
`metadata`: `retrain_of` (the old job id) and `replaces` (the old model name, which
`tunelab serve` answers to).
"""

from __future__ import annotations

from typing import Any

from tunelab.errors import NotFoundError
from tunelab.registry import JobRecord, Registry

KEY = "migrate"
LOCAL_FILES = "local_files"
RETRAIN_OF = "retrain_of"
REPLACES = "replaces"


def migrate_state(job: JobRecord) -> dict[str, Any]:
    return dict(job.config.get(KEY) or {})


def is_inventoried(job: JobRecord) -> bool:
    return KEY in job.config


def save_state(registry: Registry, job: JobRecord, **changes: Any) -> JobRecord:
    """Merge `changes` into the job's migrate state (one row update)."""
    config = dict(job.config)
    config[KEY] = {**migrate_state(job), **changes}
    return registry.update_job(job.id, config=config)


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
    return [job for job in registry.list_jobs(limit=100_000) if is_inventoried(job)]
