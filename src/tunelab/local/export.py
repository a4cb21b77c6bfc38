"""Export a local job's model: the adapter as is, or merged into its base as a plain HF model.

A merged export is what people ship: `AutoModelForCausalLM.from_pretrained(DIR)` and
`AutoTokenizer.from_pretrained(DIR)` load it with no peft and no tunelab, the chat template
included, and its greedy answers equal those of the adapter on its base.

Exports are written into a staging folder beside the target and renamed into place, so a
crash never leaves a half-written model that looks complete.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from tunelab.errors import NotFoundError, UsageError
from tunelab.registry import JobRecord, open_registry

ADAPTER_CONFIG = "adapter_config.json"
LOCAL_PROVIDER = "local"


@dataclass(frozen=True)
class ExportResult:
    job_id: str
    fine_tuned_model: str | None
    output_dir: str
    merged: bool
    base_model: str
    files: list[str]
    bytes: int

    def to_dict(self) -> dict:
        return asdict(self)


def export_job(job_ref: str, output_dir: Path, *, merge: bool) -> ExportResult:
    """Write job `job_ref`'s model into `output_dir` (which must be absent or empty)."""
    job = find_local_job(job_ref)
    weights = trained_weights_dir(job)
    target = _checked_target(output_dir)
    is_adapter = (weights / ADAPTER_CONFIG).is_file()
    base = adapter_base(weights) if is_adapter else str(job.base_model or "")
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        if merge and is_adapter:
            _write_merged(weights, base, staging)
        else:  # an adapter without --merge, or full fine-tuned weights: a plain copy
            shutil.copytree(weights, staging, dirs_exist_ok=True)
        _move_into_place(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _record_event(job, target, merged=merge and is_adapter)
    files = sorted(str(path.relative_to(target)) for path in target.rglob("*") if path.is_file())
    size = sum((target / name).stat().st_size for name in files)
    return ExportResult(job.id, job.fine_tuned_model, str(target), merge and is_adapter,
                        base, files, size)


def find_local_job(job_ref: str) -> JobRecord:
    """The registry job named by an id or an `ft:` model name; only local jobs export."""
    registry = open_registry()
    try:
        job = registry.find_job(job_ref) or registry.find_job_by_model(job_ref)
    finally:
        registry.close()
    if job is None:
        raise NotFoundError(f"no job or model {job_ref!r} in the registry",
                            fix="run `tunelab jobs list` to see job ids and model names")
    if job.provider != LOCAL_PROVIDER:
        raise UsageError(f"{job_ref} is a {job.provider} job: cloud models can't be exported, "
                         "their weights stay with the provider",
                         fix="export a local job (`tunelab train FILE`), or use the cloud "
                             "model by name with `tunelab chat`")
    return job


def trained_weights_dir(job: JobRecord) -> Path:
    """The folder holding the job's trained adapter (or full weights)."""
    if not job.run_dir:
        raise NotFoundError(f"job {job.id} has no run folder in the registry",
                            fix="train it again with `tunelab train`")
    run_dir = Path(job.run_dir)
    for name in ("adapter", "model"):
        folder = run_dir / name
        if (folder / ADAPTER_CONFIG).is_file() or (folder / "config.json").is_file():
            return folder
    raise NotFoundError(f"job {job.id} ({job.status}) has no trained weights in {run_dir}",
                        fix=f"let it finish, or resume it with `tunelab train --resume {job.id}`")


def adapter_base(adapter: Path) -> str:
    """The base model an adapter was trained on, as its adapter_config.json names it."""
    config = json.loads((adapter / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    base = config.get("base_model_name_or_path")
    if not base:
        raise UsageError(f"{adapter / ADAPTER_CONFIG}: no base_model_name_or_path",
                         fix="add the base model's folder or name to the adapter config")
    return str(base)


def _checked_target(output_dir: Path) -> Path:
    target = output_dir.expanduser().resolve()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UsageError(f"-o {output_dir}: already exists and is not an empty folder",
                         fix="pick a new folder, or remove this one first")
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def _write_merged(adapter: Path, base: str, out: Path) -> None:
    from peft import PeftModel

    from tunelab.local import model_source

    model = PeftModel.from_pretrained(model_source.load_model(base), str(adapter))
    merged = model.merge_and_unload()
    merged.save_pretrained(out, safe_serialization=True)
    _tokenizer_for(adapter, base).save_pretrained(out)


def _tokenizer_for(adapter: Path, base: str):
    """The tokenizer saved with the run (what training used), else the base model's."""
    from transformers import AutoTokenizer

    from tunelab.local import model_source

    if (adapter / "tokenizer_config.json").is_file():
        return AutoTokenizer.from_pretrained(adapter)
    return model_source.load_tokenizer(base)


def _move_into_place(staging: Path, target: Path) -> None:
    if target.exists():  # an empty folder the user made: rename cannot replace it
        target.rmdir()
    staging.rename(target)


def _record_event(job: JobRecord, target: Path, *, merged: bool) -> None:
    registry = open_registry()
    try:
        kind = "merged model" if merged else "weights"
        registry.add_event(job.id, f"exported {kind} to {target}", type="export",
                           data={"output_dir": str(target), "merged": merged})
    finally:
        registry.close()
