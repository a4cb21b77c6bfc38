"""The folder a GGUF export writes: `<name>.gguf`, the Ollama `Modelfile`, and `README.md`
with the exact commands that run them.

Everything that can be refused (the architecture, the tokenizer, the chat template) is
checked before the first tensor is written.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunelab.errors import UsageError
from tunelab.local.gguf import ollama, writer
from tunelab.local.gguf import tokenizer as vocab_of

Progress = Callable[[str, int, int], None]
TENSORS_STAGE = "writing tensors"


@dataclass(frozen=True)
class Bundle:
    name: str  # the file stem and the Ollama model name
    quantize: str
    modelfile: bool = True
    system: str | None = None
    sampling: dict[str, float | int] = field(default_factory=dict)
    base_pre: str | None = None  # the pre-tokenizer name the base model's GGUF declared
    about: dict[str, str] = field(default_factory=dict)  # job, base, checkpoint: for README


def file_name(label: str, quantize: str) -> str:
    """A file and Ollama model name from a job id or folder name: lower case, no spaces."""
    stem = re.sub(r"[^a-z0-9._-]+", "-", label.lower()).strip("-.") or "model"
    return f"{stem}-{quantize}"


def base_pre_tokenizer(path: Path) -> str | None:
    """`tokenizer.ggml.pre` of a base model's own GGUF: the split rule its vocabulary was
    trained with, which an HF tokenizer rebuilt from that GGUF may no longer spell out."""
    from gguf import GGUFReader

    field_ = GGUFReader(path).fields.get("tokenizer.ggml.pre")
    return str(field_.contents()) if field_ is not None else None


def check_model(config: Any) -> None:
    """Refuse an unsupported architecture before the weights are even loaded."""
    writer.architecture(config)


def write_bundle(out: Path, model: Any, tokenizer: Any, bundle: Bundle,
                 progress: Progress) -> None:
    config = model.config
    writer.architecture(config)
    vocab = vocab_of.read_vocab(tokenizer, config.vocab_size, pre=bundle.base_pre)
    pieces = ollama.chat_pieces(tokenizer) if bundle.modelfile else None
    gguf_name = f"{bundle.name}.gguf"
    needed = writer.estimated_bytes(model, bundle.quantize)
    free = shutil.disk_usage(out).free
    if needed > free:
        raise UsageError(f"the GGUF needs about {needed / 1e6:.0f} MB and the disk has "
                         f"{free / 1e6:.0f} MB free; nothing was written",
                         fix="free some space or pick a folder on another disk")
    writer.write_gguf(out / gguf_name, model, vocab, bundle.quantize, name=bundle.name,
                      progress=lambda done, total: progress(TENSORS_STAGE, done, total))
    stops: list[str] = []
    if pieces is not None:
        stops = ollama.stop_tokens(tokenizer, pieces, _generation_eos(model, tokenizer))
        (out / "Modelfile").write_text(
            ollama.modelfile(gguf_name, pieces, stops, system=bundle.system,
                             sampling=bundle.sampling), encoding="utf-8")
    (out / "README.md").write_text(readme(bundle, gguf_name, stops), encoding="utf-8")


def _generation_eos(model: Any, tokenizer: Any) -> list[int]:
    """End ids the generation config adds to the tokenizer's EOS (Llama 3's <|eot_id|>)."""
    ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = [ids] if isinstance(ids, int) else list(ids or [])
    return [token_id for token_id in ids if token_id != tokenizer.eos_token_id]


def readme(bundle: Bundle, gguf_name: str, stops: list[str]) -> str:
    about = "\n".join(f"- {key}: `{value}`" for key, value in bundle.about.items())
    lines = [f"# {bundle.name}", "", "Exported by `tunelab export --format gguf`.", "",
             about, f"- weights: `{gguf_name}` ({bundle.quantize}; LoRA merged), with the "
             "tokenizer and the chat template (`tokenizer.chat_template`) inside", ""]
    if bundle.modelfile:
        lines += ["## Ollama", "", "```sh", f"ollama create {bundle.name} -f Modelfile",
                  f"ollama run {bundle.name}", "```", "",
                  "The Modelfile's TEMPLATE renders the same text as the model's chat "
                  "template; it stops at " + ", ".join(f"`{stop}`" for stop in stops) + ".", ""]
        if bundle.system:
            lines += ["Its SYSTEM is the training data's system prompt, the one `tunelab test` "
                      "uses by default.", ""]
    lines += ["## llama.cpp", "", "```sh", f"llama-cli -m {gguf_name} --jinja -cnv",
              f"llama-server -m {gguf_name} --jinja --port 8080", "```", "",
              "`--jinja` makes llama.cpp use the chat template stored in the file.", "",
              "## LM Studio", "", f"Import `{gguf_name}` (`lms import {gguf_name}`).", ""]
    return "\n".join(lines)
