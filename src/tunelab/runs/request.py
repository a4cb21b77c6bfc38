"""What a face asks of the door: one typed request for every job, local or cloud.

    RunRequest
      config   the training settings, resolved (TrainConfig); `config.model_fields_set` is
               what the user gave, so a cloud job sends only those and lets the provider
               choose the rest
      target   where it trains: the provider's name and its settings
      labels   metadata the job carries from its creation (a retrain's link, a trial's sweep)
      intent   how far to go: dry run, validate only, upload only, wait for the end
      origin   who asks, recorded on the row ("server" for the API's and the dashboard's jobs)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tunelab.config import TrainConfig
from tunelab.providers.base import ProviderSettings

LOCAL = "local"


@dataclass(frozen=True)
class Target:
    """The provider a job trains on, and where it points."""

    provider: str = LOCAL
    settings: ProviderSettings = field(default_factory=ProviderSettings)
    # Cloud: the provider's learning-rate multiplier (OpenAI's, Vertex's); wins over
    # config.learning_rate, which a cloud job otherwise sends as the multiplier.
    learning_rate_multiplier: float | None = None

    @property
    def is_local(self) -> bool:
        return self.provider == LOCAL


@dataclass(frozen=True)
class Intent:
    """How far the door goes with a request."""

    dry_run: bool = False  # check and describe the exact request; send and register nothing
    # Check and estimate, nothing more: a cloud job's data and price (no key needed), a
    # local job's plan (as a dry run).
    validate_only: bool = False
    upload_only: bool = False  # cloud: check and upload the files, create no job
    # Local: True trains here, to the end; False queues the job for the server's worker.
    # Cloud: the job is created either way; True means the caller follows it to its end.
    wait: bool = True
    # Cloud: a job the provider already has with the request's labels is adopted, not created
    # again (a sweep resumed after a kill between a create and its registry row).
    adopt_labelled: bool = False


@dataclass(frozen=True)
class RunRequest:
    config: TrainConfig
    target: Target = field(default_factory=Target)
    labels: dict[str, str] = field(default_factory=dict)
    intent: Intent = field(default_factory=Intent)
    origin: str | None = None
    # An id made beforehand (registry.new_job_id), for a face that shows the job before it
    # starts (a sweep's table); None: the door makes one.
    job_id: str | None = None
    # What the job's row names as its files and echoes as its hyperparameters when the
    # asker knows them by other names (the server's clients: their file ids).
    shown_files: tuple[str, str | None] | None = None
    shown_hyperparameters: dict[str, Any] | None = None

    def given(self, key: str) -> Any:
        """A setting the user gave (flag, config file or preset), else None."""
        return getattr(self.config, key) if key in self.config.model_fields_set else None
