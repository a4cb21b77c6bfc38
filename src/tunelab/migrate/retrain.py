"""`tunelab migrate retrain MODEL --to local|vertex|NAME`: a replacement from the pulled data.

This module plans the run; the training itself goes through the door (tunelab.runs) as
`tunelab train` does, which hands the job it made back, so presets, checks, the cost
question and progress are the same. OpenAI's hyperparameters map to the target's:

    n_epochs                  -> epochs (the same passes over the data)
    batch_size                -> batch size (examples per optimizer step)
    learning_rate_multiplier  -> cloud targets: the same multiplier; local: the multiplier
                                 times the preset's (or default) learning rate, since
                                 OpenAI's multiplier scales a base rate it does not publish
    method.type dpo, beta     -> method dpo (on the kept preference pairs), the same beta
                                 (both mean the same: the weight of the pull towards the
                                 reference model in the DPO loss)

A flag the user gives wins over the mapped value. Values OpenAI left at "auto" map to
nothing, so the target's own default applies. The new job carries, from its creation on:
`retrain_of` = the old job id, `replaces` = the old model name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunelab.errors import NotFoundError, command
from tunelab.migrate.state import (
    REPLACES,
    RETRAIN_OF,
    find_old_job,
    local_files,
    migrate_state,
)
from tunelab.registry import JobRecord, open_registry

LOCAL = "local"


@dataclass
class RetrainPlan:
    job: JobRecord
    target: str
    training_file: Path
    validation_file: Path | None
    epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None  # local: an absolute rate
    learning_rate_multiplier: float | None = None  # cloud: OpenAI's multiplier, passed on
    method: str = "supervised"  # dpo: a preference-tuned job, retrained with DPO
    beta: float | None = None
    mapping: dict[str, str] = field(default_factory=dict)  # how each value was chosen

    def to_dict(self) -> dict[str, Any]:
        return {"job": self.job.id, "model": self.job.fine_tuned_model, "target": self.target,
                "training_file": str(self.training_file),
                "validation_file": str(self.validation_file) if self.validation_file else None,
                "epochs": self.epochs, "batch_size": self.batch_size,
                "learning_rate": self.learning_rate,
                "learning_rate_multiplier": self.learning_rate_multiplier,
                "method": self.method, "beta": self.beta, "mapping": self.mapping}


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else None


def data_files(job: JobRecord) -> tuple[Path, Path | None]:
    """Train on the pulled data; without a validation file, on all but the held-out slice
    (that slice is what `migrate record` asked, so compare measures unseen prompts)."""
    files = local_files(job)
    held_out = migrate_state(job).held_out
    if held_out and not files.validation_file:
        return Path(held_out.train_file), Path(held_out.val_file)
    if not files.training_file or not Path(files.training_file).is_file():
        raise NotFoundError(f"the training data of {job.id} is not pulled yet",
                            fix=f"pull it first: `{command('tunelab', 'migrate', 'pull', job.id)}`")
    validation = files.validation_file
    return Path(files.training_file), Path(validation) if validation else None


def plan(token: str, target: str, *, base_learning_rate: float) -> RetrainPlan:
    """The mapped run. `base_learning_rate`: the local rate before the flags (the preset's
    or the default), which OpenAI's multiplier scales."""
    with open_registry() as registry:
        job = find_old_job(registry, token)
    training, validation = data_files(job)
    found = RetrainPlan(job, target, training, validation)
    hyper = job.hyperparameters or {}
    _map_method(found, migrate_state(job).method, _number(hyper.get("beta")))
    epochs, batch, multiplier = (_number(hyper.get(name)) for name in (
        "n_epochs", "batch_size", "learning_rate_multiplier"))
    if epochs:
        found.epochs = int(epochs)
        found.mapping["epochs"] = f"n_epochs {int(epochs)}"
    if batch:
        found.batch_size = int(batch)
        found.mapping["batch_size"] = f"batch_size {int(batch)}"
    if multiplier:
        if target == LOCAL:
            found.learning_rate = base_learning_rate * multiplier
            found.mapping["learning_rate"] = (f"learning_rate_multiplier {multiplier:g} x "
                                              f"base {base_learning_rate:g}")
        else:
            found.learning_rate_multiplier = multiplier
            found.mapping["learning_rate_multiplier"] = f"learning_rate_multiplier {multiplier:g}"
    return found


def _map_method(found: RetrainPlan, method: str | None, beta: float | None) -> None:
    """A DPO job is replaced by a DPO job with its beta ("auto": the target's default)."""
    if method != "dpo":
        return
    found.method = "dpo"
    found.mapping["method"] = "method dpo"
    if beta:
        found.beta = beta
        found.mapping["beta"] = f"beta {beta:g}"


def labels(found: RetrainPlan) -> dict[str, str]:
    """The metadata the new job is created with: the old job it retrains, the model it
    replaces. Set at creation (registry row and cloud job alike), not after the run, so a
    retrain killed mid-training is still linked."""
    return {RETRAIN_OF: found.job.id, REPLACES: found.job.fine_tuned_model or ""}


def note(found: RetrainPlan, job: JobRecord) -> None:
    """Say in the new job's events what it replaces (its labels link it already)."""
    with open_registry() as registry:
        registry.add_event(job.id, f"trained by `tunelab migrate retrain` to replace "
                                   f"{found.job.fine_tuned_model} ({found.job.id})")
