"""Turn what the user typed for a model into a provider and a model name.

    ftjob-... or ft:...          a job in the registry: its provider and tuned model
                                 (a local job answers with its trained weights)
    base                         the base model of the tuned job named beside it
    local:<model>                a local base model (anything --model takes)
    <provider>:<model>           openai:gpt-4o-mini, kimi:moonshot-v1-8k, vertex:<endpoint>,
                                 or any endpoint declared in TUNELAB_HOME/providers.yaml
    recorded:<model>             the golden set `tunelab migrate record` kept of a model:
                                 a model whose answers are known (evaluate/golden.py)
    anything else                local weights: a run, adapter or model folder, a .gguf,
                                 the default's name, a cached hub id;
                                 with --provider P, that provider's model of that name

What local names mean is `tunelab.local.weights`'s answer: a job's weights are resolved here
(its run may have none yet), other names when they load.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from tunelab.errors import NotFoundError, UsageError, command
from tunelab.evaluate import golden
from tunelab.local import weights
from tunelab.registry import JobRecord, open_registry

LOCAL = "local"
BASE = "base"
REMOTE_PREFIXES = ("openai", "kimi", "vertex")


@dataclass(frozen=True)
class ModelSpec:
    label: str  # what the user typed; how the model is shown in tables and reports
    provider: str
    model: str  # the provider's model name; for local, a ref load_chat_model takes
    base_url: str | None = None
    job_id: str | None = None  # the tuned job behind it, for loss curves
    priced_as: str | None = None  # a recorded model: the provider whose prices it had

    @property
    def is_local(self) -> bool:
        return self.provider == LOCAL

    @property
    def is_recorded(self) -> bool:
        return self.provider == golden.RECORDED

    @property
    def identity(self) -> str:
        """What answers are cached under: the same model reached the same way. A local
        folder adds its weights' sizes and times: a resumed run rewrites its adapter."""
        stamp = _weights_stamp(Path(self.model)) if self.is_local else ""
        return f"{self.provider}|{self.base_url or ''}|{self.model}{stamp}"

    def to_dict(self) -> dict:
        return asdict(self)


def _weights_stamp(folder: Path) -> str:
    if not folder.is_dir():
        return ""
    files = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin"))
    return "".join(f"|{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)


def resolve_specs(tokens: list[str], *, provider: str | None = None,
                  base_url: str | None = None) -> list[ModelSpec]:
    """Resolve every model the user named; `base` takes the job named beside it."""
    if not tokens:
        raise UsageError("name at least one model", fix="e.g. `tunelab compare base ftjob-...`")
    jobs = [_find_job(token) for token in tokens]
    specs = []
    for index, token in enumerate(tokens):
        if token.startswith(f"{golden.RECORDED}:"):
            specs.append(_recorded(token))
        elif token == BASE:
            specs.append(_base_of(_job_beside(tokens, jobs, index)))
        elif jobs[index] is not None:
            specs.append(_tuned(token, jobs[index]))
        else:
            specs.append(_named(token, provider, base_url))
    return specs


def resolve_spec(token: str, *, provider: str | None = None,
                 base_url: str | None = None) -> ModelSpec:
    """One model, for `test`, `chat` and the judge (`base` has no job beside it here)."""
    return resolve_specs([token], provider=provider, base_url=base_url)[0]


def _recorded(token: str) -> ModelSpec:
    """A golden set as a model; NotFoundError names `tunelab migrate record` if none."""
    model = token.partition(":")[2]
    header = golden.load(model).header
    return ModelSpec(token, golden.RECORDED, model, job_id=header.job_id,
                     priced_as=header.provider)


def _find_job(token: str) -> JobRecord | None:
    if token == BASE or token.startswith(f"{golden.RECORDED}:"):
        return None
    with open_registry() as registry:
        return registry.find_job(token) or registry.find_job_by_model(token)


def _job_beside(tokens: list[str], jobs: list[JobRecord | None], index: int) -> JobRecord:
    """The nearest job to `base`, looking right first (`compare base JOB`)."""
    order = sorted(range(len(tokens)), key=lambda other: (abs(other - index), other < index))
    for other in order:
        if jobs[other] is not None:
            return jobs[other]
    raise UsageError("`base` needs a tuned job beside it",
                     fix="name one, e.g. `tunelab compare base ftjob-...` "
                         "(see `tunelab jobs list`)")


def _base_of(job: JobRecord) -> ModelSpec:
    if job.provider == LOCAL:
        return ModelSpec(label=BASE, provider=LOCAL, model=weights.base_of(job).name)
    if not job.base_model:
        raise NotFoundError(f"job {job.id} records no base model",
                            fix="name the base model itself instead of `base`")
    return ModelSpec(label=BASE, provider=job.provider,
                     model=job.base_model, base_url=_job_base_url(job))


def _tuned(token: str, job: JobRecord) -> ModelSpec:
    if job.provider == LOCAL:
        found = weights.of_job(job, token)
        return ModelSpec(token, LOCAL, str(found.path), job_id=job.id)
    if not job.fine_tuned_model:
        raise NotFoundError(f"job {job.id} has no tuned model yet (status {job.status})",
                            fix=f"wait for it: `{command('tunelab', 'jobs', 'watch', job.id)}`")
    return ModelSpec(token, job.provider, job.fine_tuned_model, _job_base_url(job), job.id)


def _job_base_url(job: JobRecord) -> str | None:
    # Jobs keep the endpoint they were created on; only a URL is worth pointing a client at.
    endpoint = job.endpoint or ""
    return endpoint if endpoint.startswith(("http://", "https://")) else None


def _named(token: str, provider: str | None, base_url: str | None) -> ModelSpec:
    prefix, sep, rest = token.partition(":")
    if sep and rest and prefix != "ft" and _is_provider(prefix):
        return _local(token, rest) if prefix == LOCAL else ModelSpec(token, prefix, rest,
                                                                     base_url)
    if provider:
        return _local(token, token) if provider == LOCAL else ModelSpec(token, provider,
                                                                        token, base_url)
    if token.startswith("ftjob-"):
        raise NotFoundError(f"no job {token!r} in the registry",
                            fix="run `tunelab jobs list` to see job ids and model names")
    if token.startswith("ft:"):
        # A tuned OpenAI model made outside tunelab: its name says whose it is.
        return ModelSpec(token, "openai", token, base_url)
    return _local(token, token)


def _local(label: str, name: str) -> ModelSpec:
    """Local weights by any name tunelab.local.weights takes, resolved when they load."""
    return ModelSpec(label, LOCAL, name)


def _is_provider(name: str) -> bool:
    if name == LOCAL or name in REMOTE_PREFIXES:
        return True
    from tunelab.providers import provider_names

    return name in provider_names()
