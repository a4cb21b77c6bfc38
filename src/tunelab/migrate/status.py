"""`tunelab migrate status`: each inventoried model's step, its days left, the next command.

The steps, in order: inventoried, pulled, recorded, retrained, compared. Each is read from
what the step left behind (the old job's registry row, the golden set, a replacement job,
the last comparison), so status is true whichever process or machine ran the steps.
"""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

from tunelab.data.lifecycle import days_left
from tunelab.errors import command
from tunelab.evaluate import golden
from tunelab.migrate.state import inventoried_jobs, migrate_state, replacements
from tunelab.registry import JobRecord, open_registry

STEPS = ("inventoried", "pulled", "recorded", "retrained", "compared")


@dataclass
class Row:
    job_id: str
    model: str | None
    status: str
    step: str  # the last step done
    shutdown: str | None
    days_left: int | None
    replacement: str | None  # the newest replacement job
    destination: str | None  # where it trains: provider and base model ("together Qwen/...")
    next: str  # the command to run next

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _recorded(model: str | None) -> bool:
    if not model:
        return False
    header = golden.read_header(model)
    if header is None:
        return False
    greedy = {a.key for a in golden.read_log(model) if a.kind == golden.GREEDY}
    return len(greedy) >= header.prompts > 0


def _row(job: JobRecord, newest: JobRecord | None) -> Row:
    state = migrate_state(job)
    model = job.fine_tuned_model
    shutdown = state.shutdown
    left = days_left(date.fromisoformat(shutdown)) if shutdown else None
    compared = golden.last_comparison(model) if model else None
    done = ["inventoried"]
    name = model or job.id
    if state.pulled_at:
        done.append("pulled")
        if _recorded(model):
            done.append("recorded")
            if newest is not None:
                done.append("retrained")
                if compared and newest.id in (compared.get("candidates") or []):
                    done.append("compared")
    # Each a command line to paste: a provider's ids and names quoted (errors.command).
    nexts = {
        "inventoried": command("tunelab", "migrate", "pull", job.id),
        "pulled": command("tunelab", "migrate", "record", name) if model
        else "nothing more: no model",
        "recorded": command("tunelab", "migrate", "retrain", name, "--to", "local"),
        "retrained": (command("tunelab", "compare", f"recorded:{name}", newest.id, "--report",
                              "compare.html")
                      if newest is not None and newest.status == "succeeded" else
                      command("tunelab", "jobs", "watch", newest.id) if newest is not None
                      else ""),
        "compared": f"tunelab serve (answers as {shlex.quote(name)} with "
                    f"{shlex.quote(newest.id)})" if newest else "",
    }
    if newest is not None and newest.status in ("failed", "cancelled") and \
            done[-1] == "retrained":
        nexts["retrained"] = command("tunelab", "migrate", "retrain", name, "--to",
                                     newest.provider)
    where = f"{newest.provider} {newest.base_model or ''}".strip() if newest else None
    return Row(job.id, model, job.status, done[-1], shutdown, left,
               newest.id if newest else None, where, nexts[done[-1]])


def status() -> list[Row]:
    """Every inventoried job, the one closest to shutting down first."""
    with open_registry() as registry:
        jobs = inventoried_jobs(registry)
        newest = {job.id: next(iter(replacements(registry, job.id)), None) for job in jobs}
    rows = [_row(job, newest[job.id]) for job in jobs]
    return sorted(rows, key=lambda row: (row.days_left is None, row.days_left or 0, row.job_id))
