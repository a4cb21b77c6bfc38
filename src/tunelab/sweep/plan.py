"""A sweep on disk: its plan, its progress, and its trials' jobs in the registry.

`TUNELAB_HOME/sweeps/<sweep-id>/` holds
- `plan.json`: what was asked, written once (the base config every trial starts from, the
  space, grid or TPE, the budget, the provider), so a resume needs nothing but the id;
- `progress.json`: the time spent so far and whether the sweep finished;
- `sweep.pid` while a process runs it;
- at the end `curves.png`, `winner.yaml` and `summary.json`.

The trials themselves are jobs in the registry, found by `metadata["sweep"]`, with their
index in `metadata["trial"]` and their parameters as `hyperparameters`. A trial the sweep had
to start again (killed before its first checkpoint) has two jobs; the newer one counts.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tunelab import home
from tunelab.errors import NotFoundError, UsageError
from tunelab.registry import JobRecord, open_registry
from tunelab.sweep.space import Space, param_from_dict

SWEEP_KEY, TRIAL_KEY = "sweep", "trial"  # the job metadata keys
PRUNED = "pruned"  # the native status of a trial the median rule stopped


@dataclass
class SweepPlan:
    id: str
    provider: str
    base: dict[str, Any]  # local: the resolved TrainConfig; cloud: the run's shared values
    space: dict[str, dict[str, Any]]  # key -> Choices/Range as_dict
    trials: int | None = None  # TPE: how many to sample; None: the whole grid
    budget_minutes: float | None = None
    keep_all: bool = False
    cloud: dict[str, Any] = field(default_factory=dict)  # where: base_url, project_id, ...
    fingerprint: str = ""
    created_at: float = 0.0

    @property
    def mode(self) -> str:
        return "grid" if self.trials is None else "tpe"

    @property
    def folder(self) -> Path:
        return sweeps_dir() / self.id

    def parsed_space(self) -> Space:
        return {key: param_from_dict(value) for key, value in self.space.items()}


def sweeps_dir() -> Path:
    return home.folder(home.home() / "sweeps")


def fingerprint(plan: SweepPlan, files: list[str | None]) -> str:
    """The same command on the same files gives the same fingerprint: running it again
    resumes the unfinished sweep instead of starting a second one."""
    stamps = []
    for name in files:
        if name and Path(name).is_file():
            stat = Path(name).stat()
            stamps.append([str(Path(name).resolve()), stat.st_size, stat.st_mtime_ns])
    what = {"provider": plan.provider, "base": plan.base, "space": plan.space,
            "trials": plan.trials, "budget": plan.budget_minutes, "keep_all": plan.keep_all,
            "cloud": plan.cloud, "files": stamps}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()


def create(plan: SweepPlan) -> SweepPlan:
    """Give `plan` an id and write it."""
    plan.id = f"sweep-{secrets.token_hex(6)}"
    plan.created_at = time.time()
    folder = home.folder(plan.folder, what="the sweep folder")
    (folder / "plan.json").write_text(json.dumps(asdict(plan), indent=2, default=str),
                                      encoding="utf-8")
    return plan


def load(sweep_id: str) -> SweepPlan:
    path = sweeps_dir() / sweep_id / "plan.json"
    if "/" in sweep_id or not path.is_file():
        raise NotFoundError(f"no sweep {sweep_id!r} in {sweeps_dir()}",
                            fix="check the id a sweep printed when it started")
    try:
        return SweepPlan(**json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError) as error:
        raise UsageError(f"{path} does not read back ({type(error).__name__})",
                         fix="start a new sweep") from None


def unfinished(fingerprint_: str) -> SweepPlan | None:
    """The newest sweep with this fingerprint that has not finished, if any."""
    found = []
    for path in sweeps_dir().glob("sweep-*/plan.json"):
        try:
            plan = load(path.parent.name)
        except (NotFoundError, UsageError):
            continue
        if plan.fingerprint == fingerprint_ and not read_progress(plan).get("finished"):
            found.append(plan)
    return max(found, key=lambda plan: plan.created_at) if found else None


def read_progress(plan: SweepPlan) -> dict[str, Any]:
    try:
        return json.loads((plan.folder / "progress.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def write_progress(plan: SweepPlan, **changes: Any) -> dict[str, Any]:
    progress = {**read_progress(plan), **changes}
    staging = plan.folder / "progress.json.part"
    staging.write_text(json.dumps(progress, indent=2), encoding="utf-8")
    os.replace(staging, plan.folder / "progress.json")
    return progress


def claim(plan: SweepPlan) -> None:
    """Refuse when another live process runs this sweep; else mark it as ours."""
    pid_file = plan.folder / "sweep.pid"
    try:
        pid = int(pid_file.read_text())
        if pid != os.getpid():
            os.kill(pid, 0)
            raise UsageError(f"sweep {plan.id} is running in process {pid}",
                             fix="wait for it, or stop it with Ctrl-C there first")
    except (OSError, ValueError):
        pass  # no file, or its process is gone (killed): the sweep is ours to continue
    pid_file.write_text(str(os.getpid()))


def release(plan: SweepPlan) -> None:
    (plan.folder / "sweep.pid").unlink(missing_ok=True)


def trial_jobs(sweep_id: str) -> dict[int, JobRecord]:
    """Each trial's job (the newest, for a trial started again), by trial index."""
    with open_registry() as registry:
        jobs = registry.list_jobs(limit=1_000_000)
    found: dict[int, JobRecord] = {}
    for job in sorted(jobs, key=lambda job: job.seq or 0):
        meta = job.metadata or {}
        if meta.get(SWEEP_KEY) == sweep_id and str(meta.get(TRIAL_KEY, "")).isdigit():
            found[int(meta[TRIAL_KEY])] = job
    return found


def is_done(job: JobRecord) -> bool:
    """Finished for the sweep: succeeded, failed, or pruned. A trial cancelled by the user
    (Ctrl-C) or killed is not: it resumes."""
    return job.status in ("succeeded", "failed") or (
        job.status == "cancelled" and job.native_status == PRUNED)


def labels(sweep_id: str, index: int) -> dict[str, str]:
    return {SWEEP_KEY: sweep_id, TRIAL_KEY: str(index)}
