"""`tunelab migrate pull JOB|MODEL`: the job's data and metrics, safe on this machine.

Training, validation and result files are downloaded into the blob store (by content hash),
one at a time; each is recorded on the job's row the moment it is whole, so an interrupted
pull resumes with the next file and a finished one fetches nothing. The data files go
through the data doctor; the result file's per-step metrics go into the registry in the one
vocabulary (so `tunelab jobs show/compare` draw the curves). A job trained without a
validation file gets a deterministic held-out slice of its training data instead
(`tunelab data split`, seed 0): the prompts `migrate record` asks, and the validation data
of `migrate retrain`, which then trains on the rest. A DPO job's files are preference pairs:
kept, checked and split the same way (the check records each file's format).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tunelab import home
from tunelab.errors import TunelabError
from tunelab.migrate import blobs, results
from tunelab.migrate.account import account_of
from tunelab.migrate.state import find_old_job, local_files, migrate_state, save_state
from tunelab.providers.openai_compat import MAX_DOWNLOAD_BYTES
from tunelab.registry import JobRecord, open_registry
from tunelab.registry.job_config import FileCheck, HeldOut, PulledFile

TRAINING, VALIDATION, RESULT = "training_file", "validation_file", "result_file"
SUFFIX = {TRAINING: ".jsonl", VALIDATION: ".jsonl", RESULT: ".csv"}
HELD_OUT = 0.1  # the share of training data held out when the job had no validation file


@dataclass
class Pulled:
    role: str
    file_id: str
    blob: dict[str, Any]
    fetched: bool  # False: it was already here
    check: dict[str, Any] | None = None


@dataclass
class PullReport:
    job_id: str
    model: str | None
    files: list[Pulled] = field(default_factory=list)
    metric_steps: int = 0
    held_out: dict[str, Any] | None = None  # the split made when there was no validation file
    skipped_rows: int = 0  # result-file rows that were no metrics (results.parse)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def wanted(job: JobRecord) -> list[tuple[str, str]]:
    """(role, remote file id) of every file worth keeping, in download order."""
    files = [(TRAINING, job.training_file), (VALIDATION, job.validation_file)]
    files += [(RESULT, file_id) for file_id in migrate_state(job).result_files]
    return [(role, file_id) for role, file_id in files if file_id]


def pull(token: str, max_bytes: int | None = None) -> PullReport:
    """Fetch what is missing, each file at most `max_bytes` (--max-download-mb; default
    openai_compat.MAX_DOWNLOAD_BYTES)."""
    limit = MAX_DOWNLOAD_BYTES if max_bytes is None else max_bytes
    with open_registry() as registry:
        job = find_old_job(registry, token)
    home.outside_name(job.id, what="job id")  # it names a folder below: refused before anything
    account = account_of(job)
    report = PullReport(job.id, job.fine_tuned_model)
    for role, file_id in wanted(job):
        known = migrate_state(job).pulled.get(file_id)
        fetched = known is None or not blobs.is_whole(known)
        if fetched:
            blob = blobs.download(file_id, SUFFIX[role],
                                  lambda path, fid=file_id: account.download_file(
                                      fid, path, limit))
            known = PulledFile(role=role, **blob.to_dict())
            job = _remember(job.id, file_id, known)
        elif known.role != role and role in (TRAINING, VALIDATION):
            job = _keep_as(job.id, role, known.path)  # one file id in both roles: both kept
        report.files.append(Pulled(role, file_id, known.model_dump(), fetched))
    job = _checked(job, report)
    report.metric_steps = _load_metrics(job, report)
    report.held_out = _held_out(job)
    with open_registry() as registry:
        job = registry.get_job(job.id)
        save_state(registry, job, pulled_at=time.time())
    return report


def _remember(job_id: str, file_id: str, blob: PulledFile) -> JobRecord:
    """Record one whole file on the job's row at once (what a resumed pull skips); a data
    file becomes the job's local copy of its role."""
    with open_registry() as registry:
        job = registry.get_job(job_id)
        pulled = {**migrate_state(job).pulled, file_id: blob}
        files = local_files(job)
        if blob.role in (TRAINING, VALIDATION):
            files = files.model_copy(update={blob.role: blob.path})
        return save_state(registry, job, pulled=pulled, local_files=files)


def _keep_as(job_id: str, role: str, path: str) -> JobRecord:
    """A file already kept in one role becomes the job's local copy of another too (a job
    whose training file is also its validation file)."""
    with open_registry() as registry:
        job = registry.get_job(job_id)
        return save_state(registry, job,
                          local_files=local_files(job).model_copy(update={role: path}))


def _checked(job: JobRecord, report: PullReport) -> JobRecord:
    """The data doctor's verdict on each data file (kept with it; bad data is reported, not
    refused: it is what the old model was trained on)."""
    from tunelab.data.check import check_file

    checks: dict[str, FileCheck] = {}
    for item in report.files:
        if item.role == RESULT:
            continue
        try:
            found = check_file(item.blob["path"], provider=job.provider, model=job.base_model)
            first = sorted(found.errors.listed, key=lambda p: p.line or 0)[:1]
            check = FileCheck(ok=found.ok, examples=found.examples, format=found.format,
                              errors=found.errors.total, warnings=found.warnings.total,
                              first_error=f"line {first[0].line}: {first[0].code}: "
                                          f"{first[0].message}" if first else None)
        except TunelabError as error:
            check = FileCheck(ok=False, examples=0, errors=1, warnings=0,
                              first_error=error.render())
        checks[item.file_id] = check
        item.check = check.model_dump()
    with open_registry() as registry:
        job = registry.get_job(job.id)
        return save_state(registry, job, checks=checks)


def _load_metrics(job: JobRecord, report: PullReport) -> int:
    """Per-step metrics into the registry (merged by step, so a rerun writes the same rows),
    and the job's summary from them."""
    rows: list[dict[str, Any]] = []
    for item in report.files:
        if item.role == RESULT:
            parsed = results.parse(Path(item.blob["path"]).read_bytes(), item.blob["path"])
            rows += parsed.rows
            report.skipped_rows += parsed.skipped
    if not rows:
        return 0
    with open_registry() as registry:
        for row in rows:
            values = dict(row)
            registry.add_metrics(job.id, int(values.pop("step")), values)
        current = registry.get_job(job.id)
        registry.update_job(job.id, metrics={**current.metrics, **results.summary(rows)})
    return len(rows)


def _held_out(job: JobRecord) -> dict[str, Any] | None:
    """Without a validation file: split the training data once, deterministically."""
    from tunelab.data.split import split

    if job.validation_file:
        return None
    training = local_files(job).training_file
    if not training:
        return None
    held = migrate_state(job).held_out
    if held and Path(held.train_file).is_file() and Path(held.val_file).is_file():
        return held.model_dump()
    folder = home.home() / "migrate" / home.outside_name(job.id, what="job id")
    folder.mkdir(parents=True, exist_ok=True)
    made = HeldOut(**split(training, val=HELD_OUT, seed=0, out_dir=folder, force=True))
    with open_registry() as registry:
        save_state(registry, registry.get_job(job.id), held_out=made)
    return made.model_dump()
