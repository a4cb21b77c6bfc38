"""The typed options of `tunelab train`, built once from its flags.

`TrainOptions.flags` are the TrainConfig keys the user gave as flags (generated from the
declaration by tunelab.cli.config_flags; preset < config file < flags); `CloudOptions` are
the flags of the cloud path, with the provider's settings (its own among them); the rest
steer the command itself. The cloud path reads the run's shared values (model, epochs,
learning rate, batch size, seed, suffix, validation file, prompts) from `flags` too.

The flags every cloud command shares (--base-url, --timeout) are declared here once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from tunelab.errors import UsageError
from tunelab.providers.base import ProviderSettings

# The --help group of the flags that only a cloud provider reads.
CLOUD = "Cloud"
# --timeout, on `train` and on the `jobs` commands that ask a cloud provider.
TIMEOUT_HELP = ("Cloud: give up on the provider after this many seconds of trying, retries "
                "included (also each request's timeout). Default: 6 tries per call, 8 per "
                "upload or create; a watch rides out 3 hours of outage.")
BaseUrlFlag = Annotated[str | None, typer.Option(
    "--base-url", help="Cloud: the provider's API base URL.", rich_help_panel=CLOUD)]
TimeoutFlag = Annotated[float | None, typer.Option("--timeout", help=TIMEOUT_HELP,
                                                   rich_help_panel=CLOUD)]


@dataclass(frozen=True)
class CloudOptions:
    """The flags of `tunelab train --provider P` (P not local)."""

    provider: str = "local"
    # --base-url, and the provider's own settings (settings.own: Vertex's --project-id, ...)
    settings: ProviderSettings = field(default_factory=ProviderSettings)
    learning_rate_multiplier: float | None = None
    max_cost: float | None = None
    validate_only: bool = False
    upload_only: bool = False
    no_wait: bool = False
    interval: float | None = None
    timeout: float | None = None  # seconds a provider call may take, retries included
    yes: bool = False


@dataclass(frozen=True)
class TrainOptions:
    """Everything `tunelab train` was asked, typed."""

    file: Path | None = None
    # The TrainConfig keys given as flags, typed (paths as str); a key not given is absent.
    flags: dict[str, Any] = field(default_factory=dict)
    cloud: CloudOptions = field(default_factory=CloudOptions)
    preset: str | None = None
    config_file: Path | None = None
    save_config: Path | None = None
    force: bool = False
    dry_run: bool = False
    resume: str | None = None
    nproc: int = 1
    json: bool = False
    # Labels the job carries from its creation (migrate retrain's retrain_of/replaces), so a
    # run killed mid-training is still linked: cloud job metadata and the registry row.
    metadata: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Checked here, once, so a --dry-run refuses exactly what a real run would.
        if self.nproc < 1:
            raise UsageError(f"--nproc {self.nproc}: needs at least 1 process",
                             fix="use --nproc 2 or more, or leave it out")

    @property
    def provider(self) -> str:
        return self.cloud.provider


def known_provider(name: str, *, also: Iterable[str] = ()) -> str:
    """`name` if --provider accepts it (a built-in, an endpoint in providers.yaml, or one of
    `also`), else one UsageError listing them. Called before any data is read or priced."""
    from tunelab.providers import provider_names
    from tunelab.runs.checks import refuse_closed

    refuse_closed(name)  # Mistral's, Cohere's: gone, and said so rather than "not known"
    known = set(provider_names()) | set(also)
    if name not in known:
        raise UsageError(f"--provider {name!r} is not known",
                         fix=f"use one of {', '.join(sorted(known))}")
    return name
