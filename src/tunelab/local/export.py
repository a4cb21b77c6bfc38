"""Export a local job's model: the adapter as is, or merged into its base as a plain HF model.

A merged export is what people ship: `AutoModelForCausalLM.from_pretrained(DIR)` and
`AutoTokenizer.from_pretrained(DIR)` load it with no peft and no tunelab, the chat template
included, and its greedy answers equal those of the adapter on its base.

Exports are written into a staging folder beside the target and renamed into place, so a
crash never leaves a half-written model that looks complete.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from tunelab.errors import UsageError
from tunelab.local.weights import Kind, Weights, resolve, write_export_marker
from tunelab.registry import open_registry


@dataclass(frozen=True)
class ExportResult:
    job_id: str | None
    fine_tuned_model: str | None
    output_dir: str
    merged: bool
    base_model: str
    files: list[str]
    bytes: int
    kind: str  # what the folder holds: adapter, merged or full (see weights.Kind)

    def to_dict(self) -> dict:
        return asdict(self)


def export_job(job_ref: str, output_dir: Path, *, merge: bool) -> ExportResult:
    """Write the tuned weights `job_ref` names (a local job id, its `ft:` name or a run
    folder) into `output_dir`, which must be absent or empty."""
    target = _checked_target(output_dir)
    weights = _tuned(job_ref)
    merged = merge and weights.kind is Kind.ADAPTER
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        if merged:
            _write_merged(weights, staging)
        else:  # an adapter without --merge, or whole weights: a plain copy
            shutil.copytree(weights.path, staging, dirs_exist_ok=True)
        if merged or weights.kind is not Kind.ADAPTER:  # an adapter says what it is itself
            write_export_marker(staging, Kind.MERGED if merged else weights.kind,
                                base=weights.base, job_id=weights.job_id)
        _move_into_place(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    fine_tuned = _record_event(weights.job_id, target, merged=merged)
    files = sorted(str(path.relative_to(target)) for path in target.rglob("*") if path.is_file())
    size = sum((target / name).stat().st_size for name in files)
    kind = Kind.MERGED if merged else weights.kind
    return ExportResult(weights.job_id, fine_tuned, str(target), merged, weights.base or "",
                        files, size, kind.value)


def _tuned(job_ref: str) -> Weights:
    weights = resolve(job_ref)
    if not weights.is_tuned:
        raise UsageError(f"{job_ref} is a {weights.kind.value} model, not tuned weights: "
                         "there is nothing of yours to export",
                         fix="export a local job (`tunelab jobs list` shows their ids)")
    return weights


def _checked_target(output_dir: Path) -> Path:
    target = output_dir.expanduser().resolve()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UsageError(f"-o {output_dir}: already exists and is not an empty folder",
                         fix="pick a new folder, or remove this one first")
    return target


def _write_merged(adapter: Weights, out: Path) -> None:
    from peft import PeftModel

    from tunelab.local import model_source

    base_dir = resolve(adapter.base).model_dir()
    model = PeftModel.from_pretrained(model_source.load_model(str(base_dir)), str(adapter.path))
    merged = model.merge_and_unload()
    merged.save_pretrained(out, safe_serialization=True)
    _tokenizer_for(adapter.path, base_dir).save_pretrained(out)


def _tokenizer_for(adapter: Path, base_dir: Path):
    """The tokenizer saved with the run (what training used), else the base model's."""
    from transformers import AutoTokenizer

    from tunelab.local import model_source

    if (adapter / "tokenizer_config.json").is_file():
        return AutoTokenizer.from_pretrained(adapter)
    return model_source.load_tokenizer(str(base_dir))


def _move_into_place(staging: Path, target: Path) -> None:
    if target.exists():  # an empty folder the user made: rename cannot replace it
        target.rmdir()
    staging.rename(target)


def _record_event(job_id: str | None, target: Path, *, merged: bool) -> str | None:
    """Note the export in the job's events; the job's tuned model name, if it has one."""
    if job_id is None:  # a run folder the registry does not know
        return None
    with open_registry() as registry:
        kind = "merged model" if merged else "weights"
        registry.add_event(job_id, f"exported {kind} to {target}", type="export",
                           data={"output_dir": str(target), "merged": merged})
        job = registry.find_job(job_id)
    return job.fine_tuned_model if job else None
