"""A local job through the door: checked, then trained here to its end, or queued for the
server's worker (which calls `run_queued`). Training itself is tunelab.local.orchestrator's.
"""

from __future__ import annotations

import shutil
import threading
import time

from tunelab import home
from tunelab.local import orchestrator
from tunelab.local.prepare import DEFAULT_MODEL, check_config
from tunelab.local.warm import Trial
from tunelab.registry import JobRecord, new_job_id, open_registry
from tunelab.runs import checks
from tunelab.runs.reporter import Reporter
from tunelab.runs.request import LOCAL, RunRequest
from tunelab.runs.started import Started


def start(request: RunRequest, reporter: Reporter, *, stop: threading.Event | None,
          trial: Trial | None) -> Started:
    config = request.config
    checks.require_method(LOCAL, config.method, None)  # the same refusal as a cloud job's
    if request.intent.dry_run or request.intent.validate_only:  # check and plan, train nothing
        from tunelab.local.dryrun import dry_run

        return Started(plan=dry_run(config))
    if not request.intent.wait:
        return Started(jobs=[_queue(request)])
    result = orchestrator.train(config, job_id=request.job_id, on_event=reporter.event,
                                stop=stop, trial=trial, metadata=request.labels)
    if result["id"] is None:  # a rank other than 0 under accelerate launch: no job row
        return Started(result=result)
    with open_registry() as registry:
        return Started(jobs=[registry.get_job(result["id"])], result=result)


def _queue(request: RunRequest) -> JobRecord:
    """A queued row the server's worker trains in its turn; checked now, so a bad config
    fails the request rather than the job."""
    config = request.config
    check_config(config)
    files = request.shown_files or (config.train_file, config.validation_file)
    now = time.time()
    with open_registry() as registry:
        job = registry.create_job(JobRecord(
            id=request.job_id or new_job_id(), provider=LOCAL, status="queued",
            created_at=now, updated_at=now, origin=request.origin,
            base_model=config.model or DEFAULT_MODEL, suffix=config.suffix,
            training_file=files[0], validation_file=files[1],
            config=config,
            hyperparameters=request.shown_hyperparameters, metadata=request.labels or None))
        registry.add_event(job.id, f"Created fine-tuning job: {job.id}")
        registry.add_event(job.id, f"Validating training file: {files[0]}")
    return job


def run_queued(job: JobRecord, reporter: Reporter, stop: threading.Event) -> dict:
    """Train a queued job to its end: from its latest checkpoint when it has one (a job the
    worker was running when the server stopped, a resume queued from the dashboard), else
    from the start in a clean run folder."""
    from tunelab.config import validate_config

    with open_registry() as registry:
        has_checkpoint = bool(registry.list_checkpoints(job.id))
    # By checkpoints, not status: a resume killed while loading its model reads `queued`.
    if has_checkpoint:
        return orchestrator.resume(job.id, {}, on_event=reporter.event, stop=stop)
    shutil.rmtree(home.runs_dir() / job.id, ignore_errors=True)
    return orchestrator.train(validate_config(job.config_dict()), job_id=job.id,
                              on_event=reporter.event, stop=stop)
