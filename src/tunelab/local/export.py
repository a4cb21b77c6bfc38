"""Export a local job's model, in the format the place it goes to runs:

    hf        (default) merged into its base: `AutoModelForCausalLM.from_pretrained(DIR)`
              loads it with no peft and no tunelab, chat template included; a --full job's
              model as it is
    adapter   the PEFT adapter folder alone, for users who keep the base
    gguf      DIR/<name>.gguf (merged weights, tokenizer, special tokens, chat template) for
              llama.cpp and LM Studio, DIR/Modelfile for Ollama, DIR/README.md with the
              commands; written by tunelab.local.gguf, no converter script, no network

`checkpoint` picks a kept checkpoint (best, latest or a step) instead of the final weights.

Everything is written into a staging folder beside the target and renamed into place, so a
crash, a full disk or a refused template never leaves a half-written export, and an
existing folder is replaced (with force) only once the new one is complete. A staging folder
whose export was killed (kill -9, a power cut) is removed by the next export beside it: only
one named as tunelab names them, made on this machine by a process that is gone.

Every export writes DIR/tunelab.json: what it holds (kind, base model, job, format) and the
files it wrote. `force` replaces only such a folder, as it was written: a folder of the
user's, the one they work in, TUNELAB_HOME, or an export they added files to is refused,
and nothing is touched. Folders and files are created under the user's umask.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tunelab import home
from tunelab.errors import NotFoundError, UsageError, command
from tunelab.local import checkpoints
from tunelab.local.weights import (
    EXPORT_MARKER,
    LOCAL_PROVIDER,
    Kind,
    Weights,
    resolve,
    write_export_marker,
)
from tunelab.registry import JobRecord, open_registry

FORMATS = ("hf", "adapter", "gguf")
POINTERS = checkpoints.POINTERS  # best, latest

# (what is happening, done, total): "writing tensors" counts bytes; other stages are 0/0
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class ExportRequest:
    """What `tunelab export` was asked, checked at once and never re-read from flags."""

    job: str  # a local job id, its ft: name, or a run folder
    output_dir: Path
    format: str = "hf"
    quantize: str = "f16"  # gguf only
    checkpoint: str | None = None  # best, latest or a step number; None: the final weights
    force: bool = False  # replace an earlier export (nothing else)
    modelfile: bool = True  # gguf: write the Ollama Modelfile (needs a chat template)
    system: str | None = None  # gguf: the Modelfile's SYSTEM, the training data's prompt
    sampling: dict[str, float | int] = field(default_factory=dict)  # gguf: Modelfile PARAMETERs


@dataclass(frozen=True)
class WrittenFile:
    path: str  # relative to the output folder
    bytes: int
    sha256: str


@dataclass(frozen=True)
class ExportResult:
    job_id: str | None
    fine_tuned_model: str | None
    output_dir: str
    format: str
    kind: str  # what was exported: adapter, merged or full (see weights.Kind)
    base_model: str
    checkpoint: str | None  # the checkpoint folder exported, when one was asked for
    quantize: str | None
    files: list[WrittenFile]
    bytes: int
    seconds: float

    @property
    def merged(self) -> bool:
        return self.kind == Kind.MERGED.value

    def to_dict(self) -> dict:
        return {**asdict(self), "merged": self.merged}


def export_job(request: ExportRequest, progress: Progress | None = None) -> ExportResult:
    """Write what `request` asks into its output folder; see the module docstring."""
    started = time.perf_counter()
    _check_request(request)
    target = _checked_target(request.output_dir, force=request.force)
    staging = _staging_beside(target, request.output_dir)  # an unwritable DIR fails first
    try:
        weights = _tuned(request.job, request.checkpoint)
        kind = _exported_kind(weights, request.format)
        _write(request, weights, staging, progress or _silent)
        written = sorted(str(path.relative_to(staging)) for path in staging.rglob("*")
                         if path.is_file())
        write_export_marker(staging, kind, base=weights.base, job_id=weights.job_id,
                            fmt=request.format, files=[*written, EXPORT_MARKER])
        files = _inventory(staging)
        _move_into_place(staging, target)
    except Exception as error:  # noqa: BLE001 - a write error, whoever raised it, is one line
        failed = _os_error(error)
        if failed is None:
            raise
        raise _write_error(request.output_dir, failed) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    fine_tuned = _record_event(weights.job_id, target, request.format)
    return ExportResult(weights.job_id, fine_tuned, str(target), request.format, kind.value,
                        weights.base or "", str(weights.path.parent)
                        if request.checkpoint else None,
                        request.quantize if request.format == "gguf" else None, files,
                        sum(item.bytes for item in files),
                        round(time.perf_counter() - started, 2))


def _check_request(request: ExportRequest) -> None:
    from tunelab.local.gguf.writer import check_quantization

    if request.format not in FORMATS:
        raise UsageError(f"--format {request.format}: not an export format",
                         fix=f"use one of {', '.join(FORMATS)}")
    if request.format == "gguf":
        check_quantization(request.quantize)


def _exported_kind(weights: Weights, fmt: str) -> Kind:
    if fmt == "adapter":
        if weights.kind is not Kind.ADAPTER:
            raise UsageError(f"{weights.name} is a {weights.kind.value} model: it has no "
                             "LoRA adapter to export alone",
                             fix="use --format hf or --format gguf")
        return Kind.ADAPTER
    return Kind.MERGED if weights.kind is Kind.ADAPTER else weights.kind


def _write(request: ExportRequest, weights: Weights, out: Path, progress: Progress) -> None:
    if request.format == "adapter":
        _copy_tree(weights.path, out)
        # A checkpoint keeps the adapter alone; the run's final adapter/ has the tokenizer
        # beside it. Either way the export carries the tokenizer and chat template training
        # used, so every adapter export holds the same files.
        if not (out / "tokenizer_config.json").is_file():
            progress("saving the tokenizer", 0, 0)
            _tokenizer_for(weights.path, resolve(weights.base).model_dir()).save_pretrained(out)
    elif request.format == "hf":
        progress("merging the adapter" if weights.kind is Kind.ADAPTER else "copying", 0, 0)
        if weights.kind is Kind.ADAPTER:
            model, tokenizer = merged_model(weights)
            model.save_pretrained(out, safe_serialization=True)
            tokenizer.save_pretrained(out)
        else:
            _copy_tree(weights.path, out)
    else:
        _write_gguf(request, weights, out, progress)


def _copy_tree(source: Path, out: Path) -> None:
    """Copy a weights folder's files, each a new file under the umask (copytree would copy
    the run's modes, and fold a full disk into one shutil.Error with no errno)."""
    for path in sorted(source.rglob("*")):
        copy = out / path.relative_to(source)
        if path.is_dir():
            copy.mkdir(exist_ok=True)
        elif path.is_file() and path.name != EXPORT_MARKER:  # an export's: written anew
            shutil.copyfile(path, copy)


def _write_gguf(request: ExportRequest, weights: Weights, out: Path,
                progress: Progress) -> None:
    from transformers import AutoConfig

    from tunelab.local.gguf import bundle

    # The architecture is refused before any weight is loaded or merged.
    source = resolve(weights.base).model_dir() if weights.kind is Kind.ADAPTER \
        else weights.model_dir()
    bundle.check_model(AutoConfig.from_pretrained(source))
    label = weights.job_id or weights.path.parent.name
    about = {"job": label, "base model": weights.base or "?"}
    if request.checkpoint:
        about["checkpoint"] = weights.path.parent.name
    spec = bundle.Bundle(bundle.file_name(label, request.quantize), request.quantize,
                         modelfile=request.modelfile, system=request.system,
                         sampling=request.sampling, base_pre=_base_pre(weights), about=about)
    progress("merging the adapter" if weights.kind is Kind.ADAPTER else "loading", 0, 0)
    model, tokenizer = merged_model(weights)
    bundle.write_bundle(out, model, tokenizer, spec, progress)


def _base_pre(weights: Weights) -> str | None:
    """The pre-tokenizer name of the base model's GGUF, when the base came as one."""
    from tunelab.local.gguf.bundle import base_pre_tokenizer

    if not weights.base:
        return None
    base = resolve(weights.base)
    return base_pre_tokenizer(base.path) if base.kind is Kind.GGUF else None


# what to export ---------------------------------------------------------------------------
def _tuned(job_ref: str, checkpoint: str | None) -> Weights:
    weights = resolve(str(_checkpoint_folder(job_ref, checkpoint))) if checkpoint \
        else resolve(job_ref)
    if not weights.is_tuned:
        raise UsageError(f"{job_ref} is a {weights.kind.value} model, not tuned weights: "
                         "there is nothing of yours to export",
                         fix="export a local job (`tunelab jobs list` shows their ids)")
    return weights


def _checkpoint_folder(job_ref: str, which: str) -> Path:
    """The kept checkpoint `which` (best, latest or a step) of a job or run folder."""
    run = _run_folder(job_ref)
    root = run / "checkpoints"
    kept = sorted(path.name for path in root.glob("*") if path.is_dir()
                  and not path.name.startswith(checkpoints.TEMP_PREFIX)) if root.is_dir() else []
    found = None
    if which in POINTERS:
        found = checkpoints.read_pointer(root, which)
    elif which.isdigit():
        found = next((root / name for name in kept if _checkpoint_step(root / name) ==
                      int(which)), None)
    else:
        raise UsageError(f"--checkpoint {which}: not best, latest or a step number",
                         fix="e.g. --checkpoint best, --checkpoint latest or --checkpoint 200")
    if found is None:
        have = ", ".join(kept) or "none"
        raise NotFoundError(f"{job_ref} has no checkpoint {which!r} (kept: {have})",
                            fix=f"see `{command('tunelab', 'checkpoints', job_ref)}`")
    return found


def _checkpoint_step(folder: Path) -> int | None:
    import json

    try:
        return int(json.loads((folder / "state.json").read_text(encoding="utf-8"))["step"])
    except (OSError, ValueError, KeyError, TypeError):
        match = re.fullmatch(r"step-(\d+)", folder.name)
        return int(match.group(1)) if match else None


def _run_folder(job_ref: str) -> Path:
    with open_registry() as registry:
        job = registry.find_job(job_ref) or registry.find_job_by_model(job_ref)
    if job is not None:
        return _local_run(job, job_ref)
    path = Path(job_ref).expanduser()
    if path.is_dir():
        return path.resolve()
    raise NotFoundError(f"no job or model {job_ref!r} in the registry",
                        fix="run `tunelab jobs list` to see job ids and model names")


def _local_run(job: JobRecord, name: str) -> Path:
    if job.provider != LOCAL_PROVIDER:
        resolve(name)  # the resolver's one line for a cloud job
    if not job.run_dir:
        raise NotFoundError(f"job {job.id} has no run folder in the registry",
                            fix="train it again with `tunelab train`")
    return Path(job.run_dir)


def merged_model(weights: Weights) -> tuple[Any, Any]:
    """The whole model `weights` mean, LoRA merged, in fp32, with the tokenizer training used."""
    from tunelab.local import model_source

    if weights.kind is Kind.ADAPTER:
        from peft import PeftModel

        base_dir = resolve(weights.base).model_dir()
        with warnings.catch_warnings():  # peft calls a transformers API deprecated in v5
            warnings.simplefilter("ignore", FutureWarning)
            model = PeftModel.from_pretrained(model_source.load_model(str(base_dir)),
                                              str(weights.path)).merge_and_unload()
        return model.eval(), _tokenizer_for(weights.path, base_dir)
    model_dir = weights.model_dir()
    base_dir = resolve(weights.base).model_dir() if weights.base else model_dir
    return model_source.load_model(str(model_dir)).eval(), _tokenizer_for(model_dir, base_dir)


def _tokenizer_for(folder: Path, base_dir: Path):
    """The tokenizer saved with the run (what training used), else the base model's."""
    from transformers import AutoTokenizer

    from tunelab.local import model_source

    if (folder / "tokenizer_config.json").is_file():
        return AutoTokenizer.from_pretrained(folder)
    return model_source.load_tokenizer(str(base_dir))


# where it goes ---------------------------------------------------------------------------
def _checked_target(output_dir: Path, *, force: bool) -> Path:
    target = output_dir.expanduser().resolve()
    if target.exists() and not target.is_dir():
        raise UsageError(f"-o {output_dir}: is a file, not a folder",
                         fix="pick a folder path that does not exist yet")
    if not target.exists() or not any(target.iterdir()):
        return target
    if not force:
        raise UsageError(f"-o {output_dir}: already exists and is not an empty folder",
                         fix="pick a new folder, or add --force to replace an earlier export")
    problem = _not_an_export(target)
    if problem is not None:
        raise UsageError(f"-o {output_dir}: --force replaces only an earlier export, and "
                         f"this folder {problem}; nothing was touched",
                         fix="pick a new folder, or empty this one yourself")
    return target


def _not_an_export(folder: Path) -> str | None:
    """Why --force must not replace `folder` (resolved), or None for an earlier export that
    holds nothing but what it wrote."""
    state, here = home.home().expanduser().resolve(), Path.cwd().resolve()
    if folder == state or folder in state.parents:
        return "holds TUNELAB_HOME (the registry and every run)"
    if folder == here or folder in here.parents:
        return "is the folder you are in"
    try:
        marker = json.loads((folder / EXPORT_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"has no {EXPORT_MARKER} from one"
    if not isinstance(marker, dict) or marker.get("kind") not in {kind.value for kind in Kind}:
        return f"has a {EXPORT_MARKER} that is not an export's"
    wrote = marker.get("files")
    if isinstance(wrote, list):  # exports before the list came wrote model files only
        others = sorted(str(path.relative_to(folder)) for path in folder.rglob("*")
                        if not path.is_dir() and str(path.relative_to(folder)) not in wrote)
        if others:
            shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more"
                                             if len(others) > 3 else "")
            return f"holds files the export did not write ({shown})"
    return None


# Staging and replaced folders sit beside the target, hidden, named for what they are, the
# machine and the process that made them: .NAME.tunelab-staging-HOST-PID-TOKEN
_LEFTOVER = re.compile(r"\.(?P<name>.+)\.tunelab-(?P<what>staging|replaced)-"
                       r"(?P<host>[0-9a-f]{6})-(?P<pid>\d+)-[0-9a-f]{8}")


def _host() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]


def _sibling(target: Path, what: str) -> Path:
    return target.with_name(f".{target.name}.tunelab-{what}-{_host()}-{os.getpid()}-"
                            f"{secrets.token_hex(4)}")


def _staging_beside(target: Path, shown: Path) -> Path:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _clean_leftovers(target.parent)
        while True:
            staging = _sibling(target, "staging")
            try:
                staging.mkdir(mode=0o777)  # under the umask, as any folder the user makes
                return staging
            except FileExistsError:
                continue
    except OSError as error:
        raise _write_error(shown, error) from None


def _clean_leftovers(parent: Path) -> None:
    """What exports killed mid-way left in `parent`: their staging folders go; a folder an
    export was replacing goes back in place if nothing took its name, else goes too. Only
    tunelab's names, made on this machine, by processes that are gone."""
    for path in parent.iterdir():
        found = _LEFTOVER.fullmatch(path.name)
        if found is None or found["host"] != _host() or path.is_symlink() \
                or not path.is_dir() or _alive(int(found["pid"])):
            continue
        original = parent / found["name"]
        if found["what"] == "replaced" and not os.path.lexists(original):
            path.rename(original)
        else:
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


def _os_error(error: Exception) -> OSError | None:
    """The OS error behind a failed write: an OSError, or safetensors' SafetensorError, which
    names it only in its text ("... No space left on device (os error 28)")."""
    if isinstance(error, OSError):
        return error
    found = re.search(r"\(os error (\d+)\)", str(error))
    if found is None:
        return None
    code = int(found.group(1))
    return OSError(code, os.strerror(code))


def _write_error(shown: Path, error: OSError) -> UsageError:
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return UsageError(f"-o {shown}: the disk is full; nothing was written",
                          fix="free some space or pick a folder on another disk")
    reason = error.strerror or type(error).__name__
    return UsageError(f"-o {shown}: can't write there ({reason}); nothing was written",
                      fix="pick a folder you can write to")


def _inventory(folder: Path) -> list[WrittenFile]:
    return [WrittenFile(str(path.relative_to(folder)), path.stat().st_size, _sha256(path))
            for path in sorted(folder.rglob("*")) if path.is_file()]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _move_into_place(staging: Path, target: Path) -> None:
    """Rename the finished export in; an old folder (empty, or replaced with force) leaves
    only after the new one is complete beside it."""
    retired = None
    if target.exists():
        retired = _sibling(target, "replaced")
        target.rename(retired)
    try:
        staging.rename(target)
    except OSError:
        if retired is not None:
            retired.rename(target)
        raise
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)


def _record_event(job_id: str | None, target: Path, fmt: str) -> str | None:
    """Note the export in the job's events; the job's tuned model name, if it has one."""
    if job_id is None:  # a run folder the registry does not know
        return None
    with open_registry() as registry:
        registry.add_event(job_id, f"exported {fmt} to {target}", type="export",
                           data={"output_dir": str(target), "format": fmt})
        job = registry.find_job(job_id)
    return job.fine_tuned_model if job else None


def _silent(_what: str, _done: int, _total: int) -> None:
    return None
