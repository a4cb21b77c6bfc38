"""Which weights does this name mean? The one answer, for chat, serve, compare and export.

    name                          resolves to
    ftjob-... / ft:...            a local job's trained weights (run/adapter/ or run/model/);
                                  a cloud job is refused: its weights stay with the provider
    base (with a job)             the base model that job was trained on
    a run folder                  its trained weights, never the folder itself: a run's
                                  config.json is a training config, not a model config
    a checkpoint folder           the weights saved in it, like a run folder
    an adapter folder             a LoRA adapter; adapter_config.json names its base
    an exported folder            merged (or full) weights, as its tunelab.json says
    an HF model folder            a base model (`run/model/` of a --full run: a full fine-tune)
    a .gguf file, the default     a GGUF base model, converted to an HF folder on first load
    a hub id                      its snapshot in the local HF cache, downloaded on first
                                  use (local/hub.py: size shown, big ones asked about)

Resolving reads only small JSON files and the registry, so it is cheap (but for a hub id
not yet in the cache, which is fetched then): callers resolve first (bad names fail at
once, in one line) and load later. Base-model files (the embedded
GGUF, conversion, the hub cache) are `model_source`'s, which training's `--model` uses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from tunelab.errors import NotFoundError, UsageError, command
from tunelab.local import model_source
from tunelab.registry import JobRecord, open_registry

ADAPTER_CONFIG = "adapter_config.json"
EXPORT_MARKER = "tunelab.json"  # written by `tunelab export` beside merged or full weights
LOCAL_PROVIDER = "local"
BASE = "base"


class Kind(StrEnum):
    ADAPTER = "adapter"  # a LoRA adapter: loads on top of `base`
    MERGED = "merged"  # an adapter merged into its base by `tunelab export --merge`
    FULL = "full"  # the whole model of a --full fine-tune
    BASE = "base"  # an HF model folder nobody tuned here (or a hub snapshot)
    GGUF = "gguf"  # a base model in one .gguf file (the embedded default is one)


@dataclass(frozen=True)
class Weights:
    name: str  # what the caller asked for
    kind: Kind
    path: Path  # the adapter or model folder, or the .gguf file
    base: str | None = None  # the base model (a name resolve() takes); required for adapters
    job_id: str | None = None  # the local job that trained them, when the registry knows it

    @property
    def is_tuned(self) -> bool:
        return self.kind in (Kind.ADAPTER, Kind.MERGED, Kind.FULL)

    def model_dir(self) -> Path:
        """The folder `from_pretrained` loads (a GGUF is converted once). An adapter has
        none of its own: load its base's, then the adapter on top."""
        if self.kind is Kind.ADAPTER:
            raise UsageError(f"{self.name} is a LoRA adapter, not a whole model",
                             fix="merge it first: "
                                 f"`{command('tunelab', 'export', self.name)} --merge -o DIR`")
        return model_source.model_dir(self.path)


def resolve(name: str | None, *, job: str | None = None) -> Weights:
    """The weights `name` means. `base` needs `job` (an id or `ft:` name) beside it."""
    if name is None or not name.strip():
        return _base_model(model_source.DEFAULT_MODEL)
    if name == BASE:
        if job is None:
            raise UsageError("`base` needs a tuned job beside it",
                             fix="name one, e.g. `tunelab compare base ftjob-...`")
        return base_of(_local_job(job))
    record = _find_job(name)
    if record is not None:
        return of_job(record, name)
    path = Path(name).expanduser()
    if path.is_dir():
        return _folder(name, path.resolve())
    if name.startswith(("ftjob-", "ft:")):
        raise NotFoundError(f"no job or model {name!r} in the registry",
                            fix="run `tunelab jobs list` to see job ids and model names")
    return _base_model(name)


def of_job(job: JobRecord, name: str | None = None) -> Weights:
    """The trained weights of a local job: its run's adapter/ or, after --full, model/."""
    name = name or job.id
    _check_local(job, name)
    if not job.run_dir:
        raise NotFoundError(f"job {job.id} has no run folder in the registry",
                            fix="train it again with `tunelab train`")
    found = _run_weights(name, Path(job.run_dir), job.id, job.base_model)
    if found is None:
        resume = command("tunelab", "train", "--resume", job.id)
        raise NotFoundError(f"job {job.id} ({job.status}) has no trained weights in "
                            f"{job.run_dir}", fix=f"let it finish, or resume it with `{resume}`")
    return found


def base_of(job: JobRecord) -> Weights:
    """The base model a local job was trained on. An adapter's own config names it best:
    the trainer writes an absolute path there, while the job keeps what the user typed."""
    _check_local(job, job.id)
    adapter = Path(job.run_dir or "") / "adapter"
    ref = adapter_base(adapter) if job.run_dir and (adapter / ADAPTER_CONFIG).is_file() \
        else job.base_model
    return _base_model(ref or model_source.DEFAULT_MODEL)


def adapter_base(adapter: Path) -> str:
    """The base model an adapter was trained on, as its adapter_config.json names it."""
    config = _read_json(adapter / ADAPTER_CONFIG)
    base = config.get("base_model_name_or_path")
    if not base:
        raise UsageError(f"{adapter / ADAPTER_CONFIG}: no base_model_name_or_path",
                         fix="add the base model's folder or name to the adapter config")
    return str(base)


def write_export_marker(folder: Path, kind: Kind, *, base: str | None, job_id: str | None,
                        fmt: str = "hf", files: list[str] | None = None) -> None:
    """Say what an exported folder holds (a merged model looks like any HF folder), in which
    format, and the files the export wrote (what `export --force` may replace)."""
    marker = {"kind": kind.value, "base_model": base, "job_id": job_id, "format": fmt,
              **({"files": files} if files is not None else {})}
    (folder / EXPORT_MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")


# folders ----------------------------------------------------------------------------------
def _folder(name: str, path: Path) -> Weights:
    if (path / ADAPTER_CONFIG).is_file():
        return Weights(name, Kind.ADAPTER, path, adapter_base(path), _job_id_of(path.parent))
    if (path / EXPORT_MARKER).is_file() and model_source.is_model_folder(path):
        marker = _read_json(path / EXPORT_MARKER)
        kind = marker.get("kind")
        # only exports carry the marker, and only merged or full weights are exported as models
        kind = Kind.FULL if kind == Kind.FULL.value else Kind.MERGED
        return Weights(name, kind, path, marker.get("base_model"), marker.get("job_id"))
    if model_source.is_model_folder(path):
        if path.name == "model" and _is_run_folder(path.parent):
            return Weights(name, Kind.FULL, path, _run_base(path.parent),
                           _job_id_of(path.parent))
        return Weights(name, Kind.BASE, path)
    if _is_run_folder(path):
        found = _run_weights(name, path, _job_id_of(path), _run_base(path))
        if found is None:
            raise NotFoundError(f"{name}: this run folder holds no trained weights yet",
                                fix="let the run finish, or resume it with "
                                    f"`{command('tunelab', 'train', '--resume', path.name)}`")
        return found
    raise UsageError(f"{name}: not a model folder (no model config.json, no {ADAPTER_CONFIG})",
                     fix="pass a job id, a run or adapter folder, an HF model folder or a .gguf")


def _run_weights(name: str, run: Path, job_id: str | None,
                 base: str | None) -> Weights | None:
    """What a run (or checkpoint) folder trained: adapter/ for LoRA, model/ for --full."""
    adapter, model = run / "adapter", run / "model"
    if (adapter / ADAPTER_CONFIG).is_file():
        return Weights(name, Kind.ADAPTER, adapter.resolve(), adapter_base(adapter), job_id)
    if model_source.is_model_folder(model):
        return Weights(name, Kind.FULL, model.resolve(), base, job_id)
    return None


RUN_MARKERS = ("adapter", "model", "checkpoints", "train.log", "metrics.jsonl")


def _is_run_folder(path: Path) -> bool:
    """A tunelab run or checkpoint folder: what the trainer writes there from its start."""
    return any((path / marker).exists() for marker in RUN_MARKERS)


def _run_base(run: Path) -> str:
    """The base model a run's training config names (None there means the default)."""
    config = _read_json(run / "config.json") if (run / "config.json").is_file() else {}
    return str(config.get("model") or model_source.DEFAULT_MODEL)


def _job_id_of(run: Path) -> str | None:
    """The registry job a run folder (or one of its checkpoints) belongs to, if known."""
    candidates = [run.name]
    if run.parent.name == "checkpoints":  # runs/<id>/checkpoints/<checkpoint>/
        candidates.append(run.parent.parent.name)
    with open_registry() as registry:
        for candidate in candidates:
            if candidate and registry.find_job(candidate) is not None:
                return candidate
    return None


# names ------------------------------------------------------------------------------------
def _base_model(name: str) -> Weights:
    location = model_source.locate(name)
    if location.suffix == ".gguf":
        return Weights(name, Kind.GGUF, location)
    return _folder(name, location)  # a hub snapshot can be an adapter too


def _find_job(name: str) -> JobRecord | None:
    with open_registry() as registry:
        return registry.find_job(name) or registry.find_job_by_model(name)


def _local_job(name: str) -> JobRecord:
    record = _find_job(name)
    if record is None:
        raise NotFoundError(f"no job or model {name!r} in the registry",
                            fix="run `tunelab jobs list` to see job ids and model names")
    return record


def _check_local(job: JobRecord, name: str) -> None:
    if job.provider != LOCAL_PROVIDER:
        raise UsageError(f"{name} is a {job.provider} job: cloud models can't be exported or "
                         "loaded here, their weights stay with the provider",
                         fix="use a local job (`tunelab train FILE`), or talk to the cloud "
                             f"model by name with `{command('tunelab', 'chat', name)}`")


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UsageError(f"{path}: unreadable ({type(error).__name__})",
                         fix="restore the file, or train the job again") from None
    return value if isinstance(value, dict) else {}
