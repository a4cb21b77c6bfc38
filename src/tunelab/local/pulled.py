"""Weights that come home: a provider's trained adapter (or merged model) as a local model.

`tunelab pull JOB` hands `bring_home` the provider's download (the provider contract's
download_weights, so this module never speaks to a provider) and gets back a new local job:

    runs/<new id>/adapter/   the adapter, its adapter_config.json naming the local base
    runs/<new id>/model/     or the merged model (a whole HF folder)

recorded in the registry as a finished local job named NAME, linked both ways to the cloud
job it came from (metadata `pulled_from`, and an event on each). From there it is a local
job like any other: tunelab.local.weights resolves it for chat, serve, compare and export,
with no network.

An adapter is checked against the base model it names before anything is recorded: the base
must be on this machine (model_source: a folder, a .gguf, the embedded model, or a hub id in
the local cache; --base-model overrides the name) and the adapter must load onto it with
peft, shapes and target modules matching. A refusal leaves nothing behind.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunelab.errors import TunelabError, UsageError, command
from tunelab.home import runs_dir
from tunelab.local import model_source
from tunelab.local.weights import ADAPTER_CONFIG, adapter_base
from tunelab.registry import JobRecord, open_registry
from tunelab.registry.store import new_job_id

KINDS = ("adapter", "merged")
LOCAL = "local"


@dataclass(frozen=True)
class Pulled:
    job_id: str  # the new local job
    name: str  # its model name: what chat, compare, serve and export take
    source_job: str
    provider: str
    kind: str  # adapter or merged
    base: str | None  # the local base an adapter was checked against
    path: Path  # the weights folder
    bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "path": str(self.path)}


def default_name(source: JobRecord) -> str:
    """NAME when none is given: the provider's model name, last part, marked local."""
    remote = (source.fine_tuned_model or source.id).rstrip("/").split("/")[-1]
    return f"{remote}-local"


def bring_home(source: JobRecord, kind: str, download: Callable[[Path], Path], *,
               name: str | None = None, base: str | None = None,
               on_step: Callable[[str], None] = lambda _what: None) -> Pulled:
    """Download what `source` trained (`download(empty folder) -> weights folder`), check
    it, and record it as a new local job. Nothing stays behind on a refusal."""
    if kind not in KINDS:
        raise UsageError(f"--kind {kind}: weights come home as adapter or merged",
                         fix="pass --kind adapter (the default) or --kind merged")
    if source.status != "succeeded":
        raise UsageError(f"job {source.id} is {source.status}: only a finished job has "
                         "weights to pull",
                         fix=f"wait for it: `{command('tunelab', 'jobs', 'watch', source.id)}`")
    name = name or default_name(source)
    _refuse_taken(name)
    job_id = new_job_id()
    run = runs_dir() / job_id
    try:
        on_step(f"downloading the {kind} of {source.id} from {source.provider}")
        folder = download(run / ".download")
        on_step(f"checking the {kind} against its base model")
        if kind == "adapter":
            checked_base = _checked_adapter(folder, base, source)
            target = run / "adapter"
        else:
            checked_base = _checked_model(folder)
            target = run / "model"
        folder.rename(target)
        if kind == "adapter":
            _name_base(target, checked_base)
        shutil.rmtree(run / ".download", ignore_errors=True)
        size = sum(path.stat().st_size for path in target.rglob("*") if path.is_file())
        pulled = Pulled(job_id, name, source.id, source.provider, kind, checked_base, target,
                        size)
        _record(pulled, source)
        return pulled
    except BaseException:
        shutil.rmtree(run, ignore_errors=True)
        raise


def _refuse_taken(name: str) -> None:
    with open_registry() as registry:
        taken = registry.find_job(name) or registry.find_job_by_model(name)
    if taken is not None:
        raise UsageError(f"the name {name!r} is taken by job {taken.id}",
                         fix="pass --name NAME with another name")


def _checked_adapter(folder: Path, given: str | None, source: JobRecord) -> str:
    """The local base the adapter loads onto (what its config names, else the job's base,
    or --base-model), proven by loading it with peft."""
    named = adapter_base(folder)
    candidates = [given] if given else list(dict.fromkeys(
        name for name in (named, source.base_model) if name))
    base = None
    for candidate in candidates:
        try:
            model_source.locate(candidate)
        except TunelabError:
            continue
        base = candidate
        break
    if base is None:
        raise UsageError(f"the adapter of {source.id} was trained on {named}, which is not "
                         "on this machine" + (f" (--base-model {given} is not either)"
                                              if given else ""),
                         fix="put the base model in the local Hugging Face cache (e.g. "
                             f"`{command('huggingface-cli', 'download', named)}`) or pass "
                             "--base-model FOLDER (its folder or .gguf)")
    _load_onto(folder, base)
    path = Path(base).expanduser()
    return str(path.resolve()) if path.exists() else base


def _load_onto(adapter: Path, base: str) -> None:
    """Load the adapter onto the base with peft: a rank, module or shape that does not fit
    the base is refused by name."""
    from peft import PeftModel

    model = model_source.load_model(base)
    try:
        PeftModel.from_pretrained(model, str(adapter), is_trainable=False)
    except (RuntimeError, ValueError, KeyError) as error:
        detail = " ".join(str(error).split())[:300]
        raise UsageError(f"the pulled adapter does not fit {base}: {detail}",
                         fix="pass --base-model with the model it was trained on") from None


def _checked_model(folder: Path) -> str | None:
    """A merged model must be a whole HF model folder; its config names what it was."""
    if not model_source.is_model_folder(folder):
        raise UsageError(f"the merged weights hold no model config.json ({folder.name})",
                         fix="pull --kind adapter, or check the job on the provider")
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    return config.get("_name_or_path") or None


def _name_base(adapter: Path, base: str) -> None:
    """The adapter config names the base as this machine knows it (the provider's name is
    kept beside it), so tunelab.local.weights resolves it offline."""
    path = adapter / ADAPTER_CONFIG
    config = json.loads(path.read_text(encoding="utf-8"))
    if config.get("base_model_name_or_path") != base:
        config["tunelab_provider_base"] = config.get("base_model_name_or_path")
        config["base_model_name_or_path"] = base
        path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def _record(pulled: Pulled, source: JobRecord) -> None:
    now = time.time()
    with open_registry() as registry:
        registry.create_job(JobRecord(
            id=pulled.job_id, provider=LOCAL, status="succeeded", created_at=now,
            updated_at=now, finished_at=now, base_model=pulled.base or source.base_model,
            fine_tuned_model=pulled.name, run_dir=str(pulled.path.parent),
            metadata={"pulled_from": f"{source.provider}:{source.id}",
                      "pulled_kind": pulled.kind}))
        registry.add_event(pulled.job_id, f"pulled the {pulled.kind} of {source.provider} job "
                                          f"{source.id} ({pulled.bytes / 1e6:.1f} MB)"
                           + (f"; checked on {pulled.base}" if pulled.base else ""))
        registry.add_event(source.id, f"weights pulled home as {pulled.name} "
                                      f"({pulled.job_id}, {pulled.kind})")
