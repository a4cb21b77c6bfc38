"""A cloud run started from the new-run page: the steps of `tunelab train --provider X`.

In the request (fast, local): the provider can train, the lifecycle gate, the data check, the
cost estimate, the key (a missing one names its variable), and with the key the endpoint's
own shutdown date (one GET, as `tunelab train` makes). Off the request, on the
dashboard's background thread: upload, create and record in the registry
(cloud_training.create_and_record), so a slow provider never blocks a page. The page then
follows the launch by its token: pending, the job it made, or the provider's error as one
line (TunelabError.render, which the provider has scrubbed of the key).
"""

from __future__ import annotations

import secrets
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tunelab.errors import TunelabError
from tunelab.providers import cloud_training
from tunelab.providers.base import JobSpec, Provider


@dataclass
class Launch:
    """What the page shows of one start: its provider, the warning, then a job or a failure."""

    provider: str
    warning: str | None = None
    job_id: str | None = None
    failure: str | None = None


@dataclass(frozen=True)
class CloudRun:
    """The new-run form, read for a cloud provider (files are this server's upload paths)."""

    provider: str
    train: Path
    validation: Path | None
    model: str | None
    suffix: str | None
    overrides: dict[str, Any]


class CloudLaunches:
    def __init__(self, background: Executor) -> None:
        self.background = background
        self.launches: dict[str, Launch] = {}

    def estimate(self, run: CloudRun) -> tuple[JobSpec, cloud_training.CostEstimate,
                                               str | None]:
        """Everything before a key is needed: gate, data check, cost (the dry run)."""
        from tunelab.data.pricing import default_model

        cloud_training.require_fine_tuning(run.provider)
        model = run.model or default_model(run.provider)
        warning = cloud_training.lifecycle_gate(run.provider, None, model)
        epochs = run.overrides.get("epochs")
        report = cloud_training.check_data(run.train, provider=run.provider, model=model,
                                           epochs=epochs)
        if run.validation is not None:
            cloud_training.check_data(run.validation, provider=run.provider, model=model,
                                      epochs=epochs, role="validation file")
        cost = cloud_training.estimate_cost(report, provider=run.provider, model=model,
                                            epochs=epochs)
        spec = JobSpec(base_model=model, training_file="", suffix=run.suffix, epochs=epochs,
                       learning_rate=run.overrides.get("learning_rate"),
                       batch_size=run.overrides.get("batch_size"),
                       seed=run.overrides.get("seed"))
        return spec, cost, warning

    def start(self, run: CloudRun) -> str:
        """Check, then upload and create in the background; the launch's token."""
        from tunelab.providers import get_provider

        spec, cost, warning = self.estimate(run)
        provider = get_provider(run.provider)  # a missing key fails here, naming its variable
        # With the key, the endpoint's own shutdown date wins over the table, as in the CLI:
        # a model the endpoint retired earlier is refused here, before anything is sent.
        live = cloud_training.live_shutdown(run.provider, None, spec.base_model)
        if live is not None:
            warning = cloud_training.lifecycle_gate(run.provider, None, spec.base_model,
                                                    live_shutdown=live) or warning
        token = secrets.token_hex(8)
        self.launches[token] = Launch(run.provider, warning)
        self.background.submit(self._launch, token, provider, run, spec, cost)
        return token

    def get(self, token: str) -> Launch | None:
        return self.launches.get(token)

    def _launch(self, token: str, provider: Provider, run: CloudRun, spec: JobSpec,
                cost: cloud_training.CostEstimate) -> None:
        launch = self.launches[token]
        try:
            train = provider.upload(run.train)
            valid = provider.upload(run.validation) if run.validation is not None else None
            local_files = {"training_file": str(run.train)}
            if run.validation is not None:
                local_files["validation_file"] = str(run.validation)
            job = cloud_training.create_and_record(
                provider, replace(spec, training_file=train.id,
                                  validation_file=valid.id if valid else None),
                cost, local_files=local_files)
        except TunelabError as error:  # the provider's own words, already scrubbed
            launch.failure = error.render().splitlines()[0]
        except Exception as error:  # a bug: its type only, never its text (it may hold a key)
            launch.failure = f"internal error ({type(error).__name__})"
        else:
            launch.job_id = job.id
