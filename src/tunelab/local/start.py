"""Where a run starts: the base model, or a finished local job's model (`--from JOB`).

`--from JOB` continues from that job's weights (the usual use: DPO after SFT). Its base
becomes the run's model (`config.model`, filled in here once, so the tokenizer, the adapter's
base reference and the job name follow it); a LoRA job's adapter is then where the new
adapter starts (`start_adapter`), and a --full job's model folder is the model itself.
"""

from __future__ import annotations

from pathlib import Path

from tunelab.config import TrainConfig
from tunelab.errors import UsageError, command


def resolve_start(config: TrainConfig) -> TrainConfig:
    """`config` with `model` set to `from_job`'s base (or its whole model after --full);
    UsageError when the job is no finished local one or `model` names another base."""
    if not config.from_job:
        return config
    from tunelab.local.weights import Kind, of_job, resolve

    job = _finished_job(config.from_job)
    trained = of_job(job, config.from_job)
    model = trained.base if trained.kind is Kind.ADAPTER else str(trained.path)
    if config.model and resolve(config.model).path != resolve(model).path:
        raise UsageError(f"--from {config.from_job} was trained on {model}, not on "
                         f"--model {config.model}", fix="leave --model out with --from")
    return config.model_copy(update={"model": model})


def start_adapter(config: TrainConfig) -> Path | None:
    """The LoRA adapter folder of `from_job`, where this run's weights start; None when the
    run starts from a whole model (no --from, or a --full job)."""
    if not config.from_job:
        return None
    from tunelab.local.weights import Kind, of_job

    trained = of_job(_finished_job(config.from_job), config.from_job)
    return trained.path if trained.kind is Kind.ADAPTER else None


def _finished_job(name: str):  # noqa: ANN202 - a JobRecord; registry types stay lazy here
    from tunelab.registry import open_registry

    with open_registry() as registry:
        job = registry.find_job(name) or registry.find_job_by_model(name)
    if job is None:
        raise UsageError(f"--from {name}: no such job",
                         fix="name a local job listed by `tunelab jobs list`")
    if job.status != "succeeded":
        raise UsageError(f"--from {name}: the job is {job.status}, not succeeded",
                         fix=f"let it finish (`{command('tunelab', 'train', '--resume', job.id)}`)"
                             " or name a finished job")
    return job


def start_model(config: TrainConfig):  # noqa: ANN201 - a transformers model; torch stays lazy
    """The whole model a --full run starts from: the base, with `from_job`'s adapter merged
    into it when it has one."""
    from tunelab.local.model_source import load_model

    model = load_model(config.model)
    adapter = start_adapter(config)
    if adapter is None:
        return model
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
