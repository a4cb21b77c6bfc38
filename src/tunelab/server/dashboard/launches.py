"""A run started from the new-run page, through the door (tunelab.runs), as `tunelab train`
starts one: a local run is queued for the server's worker, a cloud run is checked, priced,
uploaded and created.

The door's launch runs on a thread of its own. The request waits for it only until every
check has passed (for a cloud run: the provider can train, the lifecycle gate, the data
check, the cost, the key, the endpoint's own shutdown date), when the door asks the cost
question, which the user answered by pressing start; a local run's queued row comes back at
once. A check that fails comes back to the form. The page then follows the launch by its
token: pending, the job it made, or the provider's error as one line (TunelabError.render,
which the provider has scrubbed of the key).
"""

from __future__ import annotations

import contextvars
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunelab.errors import TunelabError
from tunelab.registry import SERVER, JobRecord
from tunelab.runs import Intent, RunRequest, Silent, Started, Target
from tunelab.runs.checks import CostEstimate


@dataclass(frozen=True)
class NewRun:
    """The new-run form, read: the uploads (ids and this server's paths), the provider, the
    preset and overrides. The server's caps (--max-steps, --max-length) win, as for the API."""

    provider: str
    train: Path
    train_id: str
    validation: Path | None = None
    validation_id: str | None = None
    model: str | None = None
    suffix: str | None = None
    preset: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    caps: dict[str, int | None] = field(default_factory=dict)

    def request(self, intent: Intent) -> RunRequest:
        from tunelab.config import resolve_config

        flags = {**self.overrides, "train_file": str(self.train), "model": self.model,
                 "suffix": self.suffix,
                 "validation_file": str(self.validation) if self.validation else None}
        for cap, limit in self.caps.items():
            if limit is not None:
                flags[cap] = min(flags.get(cap) or limit, limit)
        config = resolve_config(preset=self.preset, flags=flags)
        echo = {"n_epochs": config.epochs, "batch_size": config.batch_size,
                "learning_rate": config.learning_rate}
        return RunRequest(config=config, target=Target(self.provider), intent=intent,
                          origin=SERVER, shown_files=(self.train_id, self.validation_id),
                          shown_hyperparameters=echo)


@dataclass
class Launch:
    """What the page shows of one start: its provider, the warning, then a job or a failure."""

    provider: str
    warning: str | None = None
    job_id: str | None = None
    failure: str | None = None


class _PageReporter(Silent):
    """The door's questions for one launch: warnings kept for the page, the cost accepted
    (the user pressed start). `settled` is set once every check has passed (the cost
    question) or the launch has ended, whichever comes first."""

    def __init__(self) -> None:
        super().__init__()
        self.warnings: list[str] = []
        self.checked = False
        self.settled = threading.Event()

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def confirm_cost(self, estimate: CostEstimate) -> None:
        self.checked = True
        self.settled.set()

    @property
    def warning(self) -> str | None:
        return self.warnings[-1] if self.warnings else None


class Launches:
    def __init__(self, on_job: Callable[[JobRecord], None]) -> None:
        self.on_job = on_job  # a job made: the worker is told, the job's events say where
        self.launches: dict[str, Launch] = {}

    def estimate(self, run: NewRun) -> tuple[Started, str | None]:
        """The dry run: checked and estimated (a local run's plan and timed steps; a cloud
        run's data check and cost, with no key), nothing sent or registered."""
        from tunelab import runs

        reporter = _PageReporter()
        return runs.start(run.request(Intent(validate_only=True)), reporter), reporter.warning

    def start(self, run: NewRun) -> tuple[str, Launch]:
        """Start `run` through the door; its token and launch. A check that fails raises
        here, for the form."""
        from tunelab import runs

        reporter = _PageReporter()
        done: Future[Started] = Future()
        request = run.request(Intent(wait=False))

        def launch() -> None:
            try:
                done.set_result(runs.start(request, reporter))
            except BaseException as error:  # handed to whoever waits on `done`
                done.set_exception(error)
            finally:
                reporter.settled.set()

        # In this request's context: the server's pinned home goes with it.
        threading.Thread(target=contextvars.copy_context().run, args=(launch,),
                         name="tunelab-launch", daemon=True).start()
        reporter.settled.wait()
        if not reporter.checked and done.exception() is not None:
            raise done.exception()  # a check failed: nothing was sent
        token = secrets.token_hex(8)
        self.launches[token] = Launch(run.provider, reporter.warning)
        done.add_done_callback(lambda future: self._ended(token, future))
        return token, self.launches[token]

    def get(self, token: str) -> Launch | None:
        return self.launches.get(token)

    def _ended(self, token: str, future: Future[Started]) -> None:
        launch = self.launches[token]
        error = future.exception()
        if isinstance(error, TunelabError):  # the provider's own words, already scrubbed
            launch.failure = error.render().splitlines()[0]
        elif error is not None:  # a bug: its type only, never its text (it may hold a key)
            launch.failure = f"internal error ({type(error).__name__})"
        elif (job := future.result().job) is not None:
            launch.job_id = job.id
            self.on_job(job)
