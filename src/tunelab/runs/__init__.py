"""The one door for jobs: start, cancel, resume, whoever asks and wherever the job runs.

Every face (the CLI, the dashboard, the API server, `tunelab sweep`, `migrate retrain`)
builds one typed RunRequest and hands it, with a Reporter of its own, to `start`. The cloud
launch sequence lives here once, so every face gets the same checks in the same order.

    request.py    RunRequest: the training settings, the target, the labels, the intent
    reporter.py   Reporter: the protocol through which the door speaks (events, warnings,
                  cost confirmation); Silent, for faces whose user already agreed
    checks.py     what is checked before a cloud job sends anything: capability, lifecycle,
                  data, cost
    cloud.py      the cloud launch sequence, for one job or a grid
    local.py      a local job: trained here, or queued for the server's worker
    started.py    Started: what a start hands back (the jobs, the check, the estimate)
    door.py       start, start_many, cancel, resume, run_queued
"""

from tunelab.runs.door import cancel, resume, run_queued, start, start_many
from tunelab.runs.reporter import LaunchStep, Reporter, Silent
from tunelab.runs.request import Intent, RunRequest, Target
from tunelab.runs.started import Started

__all__ = ["Intent", "LaunchStep", "Reporter", "RunRequest", "Silent", "Started", "Target",
           "cancel", "resume", "run_queued", "start", "start_many"]
