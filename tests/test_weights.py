"""One answer to "which weights does this name mean": every name form and every kind.

The folders here are laid out as the trainer and `tunelab export` lay them out, with only
the small JSON files the resolver reads: resolving never loads a model (the real trained
runs are in test_weights_e2e.py).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tunelab.errors import NotFoundError, UsageError
from tunelab.local import model_source
from tunelab.local.weights import Kind, resolve
from tunelab.registry import JobRecord, open_registry

MODEL_CONFIG = {"model_type": "llama", "architectures": ["LlamaForCausalLM"]}


def _json(path: Path, value: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value), encoding="utf-8")
    return path


def _adapter(folder: Path, base: str = model_source.DEFAULT_MODEL) -> Path:
    _json(folder / "adapter_config.json", {"peft_type": "LORA", "base_model_name_or_path": base})
    return folder


def _run(root: Path, job_id: str, *, full: bool, provider: str = "local",
         finished: bool = True) -> Path:
    """A run folder in the trainer's layout, recorded in the registry."""
    run = root / "runs" / job_id
    _json(run / "config.json", {"model": None, "full": full, "epochs": 1})  # a training config
    (run / "train.log").write_text("training started\n", encoding="utf-8")
    if finished and full:
        _json(run / "model" / "config.json", MODEL_CONFIG)
    elif finished:
        _adapter(run / "adapter")
    now = time.time()
    with open_registry() as registry:
        registry.create_job(JobRecord(
            id=job_id, provider=provider, status="succeeded" if finished else "running",
            created_at=now, updated_at=now, base_model=model_source.DEFAULT_MODEL,
            fine_tuned_model=f"ft:SmolLM2-135M-Instruct:t:{job_id}", run_dir=str(run)))
    return run


@pytest.mark.parametrize(("full", "kind", "inside"), [(False, Kind.ADAPTER, "adapter"),
                                                      (True, Kind.FULL, "model")])
def test_a_job_by_id_name_and_run_folder_is_its_trained_weights(
        tmp_path: Path, full: bool, kind: Kind, inside: str) -> None:
    run = _run(tmp_path, "ftjob-x", full=full)
    for name in ("ftjob-x", "ft:SmolLM2-135M-Instruct:t:ftjob-x", str(run), str(run / inside)):
        weights = resolve(name)
        assert (weights.kind, weights.path, weights.job_id, weights.base) == (
            kind, run / inside, "ftjob-x", model_source.DEFAULT_MODEL), name
        assert weights.name == name
    if full:  # a whole model loads from its own folder, never from the run folder
        assert resolve(str(run)).model_dir() == run / "model"
    else:
        with pytest.raises(UsageError, match="export .* --merge"):
            resolve(str(run)).model_dir()  # an adapter alone is not a model


def test_a_run_folder_is_never_a_base_model(tmp_path: Path) -> None:
    run = _run(tmp_path, "ftjob-full", full=True)
    # the run folder's config.json is a training config: never a model, even as a base
    with pytest.raises(UsageError, match="run or adapter folder is not a base model"):
        model_source.resolve_model_dir(str(run))


def test_a_checkpoint_folder_is_the_weights_saved_in_it(tmp_path: Path) -> None:
    run = _run(tmp_path, "ftjob-ckpt", full=False)
    checkpoint = _adapter(run / "checkpoints" / "step-2" / "adapter").parent
    weights = resolve(str(checkpoint))
    assert (weights.kind, weights.path, weights.job_id) == (
        Kind.ADAPTER, checkpoint / "adapter", "ftjob-ckpt")


def test_folders_outside_the_registry(tmp_path: Path) -> None:
    adapter = _adapter(tmp_path / "someones-adapter", base="/models/base")
    weights = resolve(str(adapter))
    assert (weights.kind, weights.base, weights.job_id) == (Kind.ADAPTER, "/models/base", None)

    plain = tmp_path / "hf-model"
    _json(plain / "config.json", MODEL_CONFIG)
    assert resolve(str(plain)).kind is Kind.BASE

    merged = tmp_path / "merged"
    _json(merged / "config.json", MODEL_CONFIG)
    _json(merged / "tunelab.json", {"kind": "merged", "base_model": "HuggingFaceTB/x",
                                    "job_id": "ftjob-gone"})
    weights = resolve(str(merged))
    assert (weights.kind, weights.base, weights.job_id) == (
        Kind.MERGED, "HuggingFaceTB/x", "ftjob-gone")
    assert weights.model_dir() == merged

    with pytest.raises(UsageError, match="not a model folder"):
        resolve(str(tmp_path / "hf-model" / ".."))  # tmp_path: files, but no model


def test_gguf_files_and_the_embedded_default_resolve_without_loading() -> None:
    embedded = model_source.embedded_gguf_path()
    for name in (None, "default", model_source.DEFAULT_MODEL, str(embedded)):
        weights = resolve(name)
        assert (weights.kind, weights.path.resolve()) == (Kind.GGUF, embedded.resolve()), name
    with pytest.raises(UsageError, match="no such GGUF file"):
        resolve("missing.gguf")


def test_a_cached_hub_id_is_its_snapshot_and_an_uncached_one_names_the_fix(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The local HF cache's layout: refs/main names the snapshot folder.
    cache = tmp_path / "hf"
    repo = cache / "models--someone--tiny-chat"
    _json(repo / "snapshots" / "abc123" / "config.json", MODEL_CONFIG)
    (repo / "snapshots" / "abc123" / "model.safetensors").write_bytes(b"")  # weights here
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    from huggingface_hub import constants

    # huggingface_hub reads the variable once, at import: set both for any test order
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    weights = resolve("someone/tiny-chat")
    assert (weights.kind, weights.path.name) == (Kind.BASE, "abc123")

    with pytest.raises(UsageError) as caught:
        resolve("nobody-here/no-such-model")
    message = caught.value.render()
    # conftest sets HF_HUB_OFFLINE=1: no download, and the line says how to allow one
    assert "nobody-here/no-such-model" in message and "unset HF_HUB_OFFLINE" in message
    assert "\n" not in message


def test_base_means_the_base_model_of_the_job_beside_it(tmp_path: Path) -> None:
    _run(tmp_path, "ftjob-lora", full=False)
    _run(tmp_path, "ftjob-full", full=True)
    for job in ("ftjob-lora", "ftjob-full"):
        weights = resolve("base", job=job)
        assert weights.kind is Kind.GGUF and weights.path == model_source.embedded_gguf_path()
    with pytest.raises(UsageError, match="needs a tuned job"):
        resolve("base")


def test_names_that_mean_no_local_weights_fail_in_one_line(tmp_path: Path) -> None:
    _run(tmp_path, "ftjob-cloud", full=False, provider="openai")
    run = _run(tmp_path, "ftjob-early", full=False, finished=False)
    cases = [("ftjob-cloud", UsageError, "weights stay with the provider"),
             ("ftjob-early", NotFoundError, "--resume ftjob-early"),
             (str(run), NotFoundError, "--resume ftjob-early"),
             ("ftjob-nope", NotFoundError, "tunelab jobs list"),
             ("ft:gpt-4o-mini:org::nope", NotFoundError, "tunelab jobs list")]
    for name, error, fix in cases:
        with pytest.raises(error) as caught:
            resolve(name)
        assert fix in caught.value.render() and "\n" not in caught.value.render(), name
