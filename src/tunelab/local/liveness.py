"""Is a local run's process still there? Its run folder's train.pid says which process trains
it (written before the job turns running, removed once it has ended), so a job the registry
calls running whose pid names no live process was killed (kill -9, an OOM kill, a power
cut) and will not end by itself.

Cheap and free of torch: `jobs list`, `show` and `watch` ask it for every running local job.
"""

from __future__ import annotations

import os
from pathlib import Path

from tunelab.registry import JobRecord

PID_FILE = "train.pid"
LOCAL = "local"


def live_pid(run_dir: Path) -> int | None:
    """The pid in the run's train.pid if that process still exists."""
    try:
        pid = int((run_dir / PID_FILE).read_text())
        os.kill(pid, 0)
    except PermissionError:  # a process of another user's: it exists
        return pid
    except (OSError, ValueError):
        return None
    return pid


def process_gone(job: JobRecord) -> bool:
    """A local job the registry calls running whose training process is gone."""
    return job.provider == LOCAL and job.status == "running" and bool(job.run_dir) \
        and live_pid(Path(job.run_dir)) is None
