"""What a base model is, read from its config.json and tokenizer files alone: architecture,
parameters, context length, chat template, and which tunelab features apply to it.

`tunelab models list/show` print these facts; training's preflight (`check_trainable`)
refuses from them, before any weights are downloaded:
- the trainer takes what transformers' AutoModelForCausalLM takes (its model_type table);
- the speed kernels run on the model types tests/test_train_kernels.py checked
  (local/kernels TESTED_MODEL_TYPES); elsewhere training runs without them;
- GGUF export takes the architectures local/gguf/writer.py writes; Ollama needs a GGUF and a
  chat template.

Parameters are counted from the config's shapes for the decoder families tunelab knows
(embeddings, attention with grouped KV heads, gated MLP, norms; MoE experts counted whole),
or from the safetensors headers when the weights are here (exact, any architecture).
"""

from __future__ import annotations

import json
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tunelab.errors import UsageError, command

CHAT_TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")
SAFETENSORS_BYTES = {"F64": 8, "F32": 4, "BF16": 2, "F16": 2, "I64": 8, "I32": 4, "I16": 2,
                     "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


@dataclass(frozen=True)
class ModelFacts:
    name: str
    source: str  # embedded, hub cache, hub, folder, export, pulled
    path: str | None = None
    size_bytes: int | None = None
    model_type: str | None = None
    architectures: tuple[str, ...] = ()
    parameters: int | None = None
    parameters_from: str | None = None  # "safetensors" (exact) or "config" (computed)
    context_length: int | None = None
    chat_template: bool | None = None  # None: the tokenizer files are not here to say
    trainer: bool = False  # the local trainer loads it (AutoModelForCausalLM)
    kernels: bool = False
    gguf_export: bool = False
    ollama: bool = False
    jobs: tuple[str, ...] = ()  # registry jobs trained on it
    notes: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        value = asdict(self)
        value["architectures"], value["jobs"] = list(self.architectures), list(self.jobs)
        value["notes"] = list(self.notes)
        return value

    @property
    def features(self) -> list[str]:
        return [name for name, on in (("train", self.trainer), ("kernels", self.kernels),
                                      ("gguf", self.gguf_export), ("ollama", self.ollama)) if on]


def read_config(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UsageError(f"{path}: unreadable model config ({type(error).__name__})",
                         fix="download the model again (`tunelab models pull NAME`)") from None
    return value if isinstance(value, dict) else {}


def facts(name: str, source: str, config: dict[str, Any], *, folder: Path | None = None,
          size_bytes: int | None = None, jobs: tuple[str, ...] = ()) -> ModelFacts:
    """The facts of a model from its config (and its folder's files, where they are here)."""
    text = text_config(config)
    model_type = config.get("model_type")
    architectures = tuple(str(name) for name in config.get("architectures") or ())
    counted = safetensors_parameters(folder) if folder is not None else None
    parameters = counted or parameter_count(config)
    template = has_chat_template(folder) if folder is not None and _has_tokenizer(folder) \
        else None
    trainer = trainer_supports(model_type)
    gguf = gguf_supports(architectures)
    return ModelFacts(
        name=name, source=source, path=str(folder) if folder else None,
        size_bytes=size_bytes if size_bytes is not None else folder_bytes(folder),
        model_type=model_type, architectures=architectures, parameters=parameters,
        parameters_from=("safetensors" if counted else "config") if parameters else None,
        context_length=text.get("max_position_embeddings"), chat_template=template,
        trainer=trainer, kernels=trainer and kernels_support(model_type), gguf_export=gguf,
        ollama=gguf and template is not False, jobs=jobs)


def text_config(config: dict[str, Any]) -> dict[str, Any]:
    """The language model's part of a config (multimodal configs nest it)."""
    nested = config.get("text_config")
    return {**config, **nested} if isinstance(nested, dict) else config


def parameter_count(config: dict[str, Any]) -> int | None:
    """Parameters of a decoder-only transformer from its config's shapes; None when the
    config lacks one of them (an architecture this formula does not describe)."""
    text = text_config(config)
    try:
        hidden, layers = int(text["hidden_size"]), int(text["num_hidden_layers"])
        vocab, heads = int(text["vocab_size"]), int(text["num_attention_heads"])
        inner = int(text.get("intermediate_size") or 4 * hidden)
    except (KeyError, TypeError, ValueError):
        return None
    kv_heads = int(text.get("num_key_value_heads") or heads)
    head_dim = int(text.get("head_dim") or hidden // heads)
    attention = hidden * head_dim * (2 * heads + 2 * kv_heads)  # q, o and k, v projections
    if text.get("attention_bias") or text.get("model_type") == "qwen2":
        attention += head_dim * (heads + 2 * kv_heads)  # q, k, v biases
    experts = int(text.get("num_experts") or text.get("num_local_experts") or 1)
    expert_inner = int(text.get("moe_intermediate_size") or inner)
    mlp = 3 * hidden * expert_inner * experts + (hidden * experts if experts > 1 else 0)
    norms = 2 * hidden + (2 * head_dim if text.get("model_type") == "qwen3" else 0)
    embeddings = vocab * hidden * (1 if text.get("tie_word_embeddings", True) else 2)
    return layers * (attention + mlp + norms) + embeddings + hidden


def safetensors_parameters(folder: Path | None) -> int | None:
    """Exact parameter count from the safetensors headers (8 bytes of length, then JSON)."""
    files = sorted(folder.glob("*.safetensors")) if folder is not None else []
    total = 0
    for path in files:
        try:
            with path.open("rb") as handle:
                length = struct.unpack("<Q", handle.read(8))[0]
                header = json.loads(handle.read(length))
        except (OSError, ValueError, struct.error):
            return None
        for key, entry in header.items():
            if key != "__metadata__":
                count = 1
                for dim in entry["shape"]:
                    count *= dim
                total += count
    return total or None


def _has_tokenizer(folder: Path) -> bool:
    return any((folder / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json",
                                                      "tokenizer.model"))


def has_chat_template(folder: Path) -> bool:
    if any((folder / name).is_file() for name in CHAT_TEMPLATE_FILES):
        return True
    config = folder / "tokenizer_config.json"
    return config.is_file() and bool(read_config(config).get("chat_template"))


def folder_bytes(folder: Path | None) -> int | None:
    if folder is None or not folder.exists():
        return None
    if folder.is_file():
        return folder.stat().st_size
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def trainer_supports(model_type: str | None) -> bool:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return bool(model_type) and model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES


def kernels_support(model_type: str | None) -> bool:
    from tunelab.local.kernels import TESTED_MODEL_TYPES

    return model_type in TESTED_MODEL_TYPES


def gguf_supports(architectures: tuple[str, ...]) -> bool:
    from tunelab.local.gguf.writer import ARCHITECTURES

    return any(name in ARCHITECTURES for name in architectures)


def check_trainable(model: ModelFacts) -> None:
    """Refuse, before any weights are fetched, a model the trainer cannot train: an
    architecture transformers' causal LM table lacks, or no chat template to render the
    dialogues with."""
    shown = ", ".join(model.architectures) or model.model_type or "unknown"
    if not model.trainer:
        raise UsageError(f"model {model.name}: the {shown} architecture (model_type "
                         f"{model.model_type!r}) is not a causal language model transformers "
                         "can load here", fix="pick a decoder-only chat model (Llama, Qwen, "
                                              "Mistral, Gemma, Phi, SmolLM ...), or upgrade "
                                              "transformers if the model is newer than it")
    if model.chat_template is False:
        raise UsageError(f"model {model.name}: its tokenizer has no chat template, so tunelab "
                         "cannot render the dialogues the way the model will be prompted",
                         fix="use its -Instruct/-chat variant, or copy the model folder, put "
                             "a Jinja template in chat_template.jinja (or tokenizer_config.json's "
                             "chat_template) and pass the folder: "
                             f"`{command('tunelab', 'train', 'FILE', '--model', 'FOLDER')}`")


def describe(name: str | None) -> tuple[ModelFacts, dict[str, Any]]:
    """The facts and config of base model `name` (what `--model` takes), reading no weights:
    a hub id not yet here fetches its config and tokenizer files only (a few MB)."""
    from tunelab.local import hub, model_source

    shown = name or model_source.DEFAULT_MODEL
    folder = model_source.tokenizer_dir(name)
    config = read_config(folder / "config.json")
    if name is None or name.strip().lower() in model_source.EMBEDDED_ALIASES:
        return facts(shown, "embedded", config, folder=folder), config
    parsed = hub.parse(name) if not Path(name).expanduser().exists() else None
    if parsed is None:
        return facts(shown, "folder", config, folder=folder), config
    if hub.cached(parsed) is not None:
        return facts(shown, "hub cache", config, folder=folder), config
    size = None if hub.offline() else hub.plan(parsed).total_bytes  # offline: config only
    found = facts(shown, "hub", config, folder=folder, size_bytes=size)
    return found, config


def weights_here(name: str | None) -> bool:
    """Whether `name`'s weights are on this machine (a hub id's in the cache)."""
    from tunelab.local import hub

    parsed = hub.parse(name) if name and not Path(name).expanduser().exists() else None
    return parsed is None or hub.cached(parsed) is not None
