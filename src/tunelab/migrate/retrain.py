"""`tunelab migrate retrain MODEL --to local|vertex|NAME`: a replacement from the pulled data.

This module plans the run; the training itself goes through the door (tunelab.runs) as
`tunelab train` does, which hands the job it made back, so presets, checks, the cost
question and progress are the same. OpenAI's hyperparameters map to the target's:

    n_epochs                  -> epochs (the same passes over the data)
    batch_size                -> batch size (examples per optimizer step)
    learning_rate_multiplier  -> cloud targets that take a multiplier (azure, vertex): the
                                 same multiplier; targets that take a rate (local, together,
                                 fireworks): the multiplier times their base rate (local: the
                                 preset's or default; together, fireworks: the rate in
                                 data/migrate_destinations.json, with its source), since
                                 OpenAI's multiplier scales a base rate it does not publish
    method.type dpo, beta     -> method dpo (on the kept preference pairs), the same beta
                                 (both mean the same: the weight of the pull towards the
                                 reference model in the DPO loss)

The base model: --base-model, else the destination's default in
data/migrate_destinations.json (an open model of the same class on together and fireworks,
the old job's own base on azure), printed with its reason. A flag the user gives wins over
the mapped value. Values OpenAI left at "auto" map to
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
    base_model: str | None = None  # the destination's default base model (None: its own)
    base_reason: str = ""  # why that one (data/migrate_destinations.json)
    beta: float | None = None
    mapping: dict[str, str] = field(default_factory=dict)  # how each value was chosen

    def to_dict(self) -> dict[str, Any]:
        return {"job": self.job.id, "model": self.job.fine_tuned_model, "target": self.target,
                "training_file": str(self.training_file),
                "validation_file": str(self.validation_file) if self.validation_file else None,
                "epochs": self.epochs, "batch_size": self.batch_size,
                "learning_rate": self.learning_rate,
                "learning_rate_multiplier": self.learning_rate_multiplier,
                "method": self.method, "beta": self.beta, "mapping": self.mapping,
                "base_model": self.base_model, "base_reason": self.base_reason}


@dataclass(frozen=True)
class Destination:
    """Where a retrain goes (data/migrate_destinations.json): its default base model for an
    OpenAI base, why, and the base rate OpenAI's multiplier scales (None: it takes the
    multiplier itself)."""

    name: str
    base_model: str | None
    reason: str
    source: str
    learning_rate: float | None


def destination(target: str, old_base: str) -> Destination | None:
    """The destination row for `target`, its base model chosen for `old_base`; None for a
    target with no row (local, vertex, an endpoint: their own defaults apply)."""
    import json
    from importlib import resources

    from tunelab.home import home_file

    document = json.loads(resources.files("tunelab.data").joinpath(
        "migrate_destinations.json").read_text("utf-8"))
    rows = document["destinations"]
    override = home_file("migrate_destinations.json")
    if override is not None:  # the user's keys replace the packaged ones, row by row
        for name, row in json.loads(override.read_text("utf-8")).get("destinations",
                                                                     {}).items():
            rows[name] = {**rows.get(name, {}), **row}
    row = rows.get(target)
    if row is None:
        return None
    larger = old_base in document.get("larger_bases", []) and row.get("larger_base_model")
    rate = row.get("learning_rate")
    return Destination(target, larger or row.get("base_model") or old_base,
                       str(row.get("reason") or ""), str(row.get("source") or ""),
                       float(rate) if isinstance(rate, int | float) else None)


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
    where = destination(target, job.base_model or "")
    if where is not None:
        found.base_model, found.base_reason = where.base_model, where.reason
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
        rate = base_learning_rate if target == LOCAL else where and where.learning_rate
        if rate:
            found.learning_rate = rate * multiplier
            found.mapping["learning_rate"] = (f"learning_rate_multiplier {multiplier:g} x "
                                              f"{target}'s base {rate:g}")
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
