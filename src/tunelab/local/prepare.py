"""Before training: check the config's files, read the examples, tokenize them.

Shared by a real run and the dry run so both see exactly the same data.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunelab.config import TrainConfig, check_paths
from tunelab.errors import ConfigError, DataError
from tunelab.local.encoding import EncodedSet
from tunelab.local.methods import Method, method_for
from tunelab.local.model_source import DEFAULT_MODEL, EMBEDDED_ALIASES


@dataclass
class Examples:
    train: list[dict]
    validation: list[dict] | None


@dataclass
class Tokenized:
    train: EncodedSet
    validation: EncodedSet | None


def check_config(config: TrainConfig) -> None:
    """Everything checkable without a model: a training file given, every named file there."""
    problems = [] if config.train_file else ["FILE: no training file given"]
    problems += check_paths(config)
    if problems:
        raise ConfigError(problems, source="training config")


def read_examples(config: TrainConfig, method: Method | None = None) -> Examples:
    """The data files as `method` (default: config.method's) reads them: chats, or
    preference rows for DPO; DataError at the first bad line."""
    read = (method or method_for(config)).read
    validation = read(config.validation_file) if config.validation_file else None
    return Examples(read(config.train_file), validation)


def tokenize(config: TrainConfig, tokenizer: Any, examples: Examples,
             method: Method | None = None) -> Tokenized:
    """The examples as `method` encodes them (default: the one config.method names)."""
    method = method or method_for(config)
    train = method.encode(tokenizer, examples.train, max_length=config.max_length,
                          source=config.train_file)
    if not train.items:
        raise DataError("no example keeps an assistant token after truncation",
                        path=config.train_file, fix="raise --max-length or check the data")
    validation = None
    if examples.validation is not None:
        # Whole, not cut at max_length: validation.py says why.
        validation = method.encode(tokenizer, examples.validation, max_length=None,
                                   source=config.validation_file)
    return Tokenized(train, validation)


def base_model_name(model: str | None) -> str:
    """The short name used in fine_tuned_model ids: ft:<this>:<suffix>:<job-id>."""
    if model is None or model.strip().lower() in EMBEDDED_ALIASES:
        return DEFAULT_MODEL.rsplit("/", 1)[-1]
    path = Path(model)
    return path.stem if path.suffix == ".gguf" else path.name or model.rstrip("/")


def base_model_ref(model: str | None) -> str:
    """How an adapter names its base: the hub id, or the absolute path of a local model."""
    if model is None or model.strip().lower() in EMBEDDED_ALIASES:
        return DEFAULT_MODEL
    path = Path(model).expanduser()
    return str(path.resolve()) if path.exists() else model


def common_system_prompt(examples: list[dict], share: float = 0.5) -> str | None:
    """The system message at least `share` of the training examples start with, if any:
    samples use the one most share; an Ollama Modelfile bakes in only one all share."""
    conversations = [conversation(example) for example in examples]
    systems = Counter(messages[0].get("content") for messages in conversations
                      if messages and messages[0].get("role") == "system")
    if not systems:
        return None
    content, count = systems.most_common(1)[0]
    return content if count >= share * len(examples) else None


def conversation(example: dict) -> list[dict]:
    """An example's messages: a chat's own, or a preference row's input (before its two
    answers)."""
    return example["messages"] if "messages" in example else example["input"]["messages"]
