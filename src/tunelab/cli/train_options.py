"""The typed options of `tunelab train`, built once from its flags.

`ConfigFlags` are the flags that become TrainConfig keys (preset < config file < flags);
`CloudOptions` are the flags of the cloud path; `TrainOptions` holds both with the flags
that steer the command itself. The cloud path reads the run's shared values (model, epochs,
learning rate, batch size, seed, suffix, validation file, prompts) from `flags` too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tunelab.errors import UsageError
from tunelab.providers.base import ProviderSettings

# --timeout, on `train` and on the `jobs` commands that ask a cloud provider.
TIMEOUT_HELP = ("Cloud: give up on the provider after this many seconds of trying, retries "
                "included (also each request's timeout). Default: 6 tries per call, 8 per "
                "upload or create; a watch rides out 3 hours of outage.")


@dataclass(frozen=True)
class ConfigFlags:
    """The TrainConfig keys given as flags; None means "not given", so lower layers decide."""

    model: str | None = None
    epochs: int | None = None
    learning_rate: float | None = None
    batch_size: int | None = None
    grad_accum: int | None = None
    max_length: int | None = None
    lora_r: int | None = None
    lora_alpha: float | None = None
    full: bool | None = None
    precision: str | None = None
    kernels: str | None = None
    seed: int | None = None
    validation_file: Path | None = None
    suffix: str | None = None
    output_dir: Path | None = None
    max_steps: int | None = None
    eval_every: int | None = None
    early_stopping_patience: int | None = None
    save_every: int | None = None
    prompts: Path | None = None

    def overrides(self) -> dict[str, Any]:
        """The given flags as TrainConfig keys (paths as strings), ready for resolve_config."""
        return {key: str(value) if isinstance(value, Path) else value
                for key, value in asdict(self).items() if value is not None}


@dataclass(frozen=True)
class CloudOptions:
    """The flags of `tunelab train --provider P` (P not local)."""

    provider: str = "local"
    settings: ProviderSettings = field(default_factory=ProviderSettings)
    adapter_size: int | None = None  # Vertex
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
    flags: ConfigFlags = field(default_factory=ConfigFlags)
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

    known = set(provider_names()) | set(also)
    if name not in known:
        raise UsageError(f"--provider {name!r} is not known",
                         fix=f"use one of {', '.join(sorted(known))}")
    return name
