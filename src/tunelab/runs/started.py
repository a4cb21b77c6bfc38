"""What the door hands back from a start: the jobs it made, and what it checked on the way."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tunelab.providers.base import FileRef
from tunelab.registry import JobRecord
from tunelab.runs.checks import CostEstimate


@dataclass
class Started:
    # The jobs made, in the order of the requests; empty for a dry run, a validate-only or
    # an upload-only start, and for a cost the reporter refused.
    jobs: list[JobRecord] = field(default_factory=list)
    report: Any = None  # cloud: the training file's data check
    estimates: list[CostEstimate] = field(default_factory=list)  # cloud: one per request
    description: dict[str, Any] | None = None  # a cloud dry run: the exact request
    plan: dict[str, Any] | None = None  # a local dry run: the plan, memory and timed steps
    uploads: dict[str, FileRef] = field(default_factory=dict)  # cloud: role -> file
    result: dict[str, Any] | None = None  # local, waited on: the run's result object

    @property
    def job(self) -> JobRecord | None:
        return self.jobs[0] if self.jobs else None
