"""A model's own token counts without loading torch: its tokenizer.json through the
`tokenizers` package, its chat template through transformers' own Jinja renderer
(`transformers.utils.chat_template_utils`, which imports no torch).

For places that count a local job's tokens and must stay light (the dashboard's data
panel): `data.tokens.ChatTemplateCounter` takes this object as it takes a transformers
tokenizer (`apply_chat_template(chat, tokenize=True)` and `tokenizer(text,
add_special_tokens=False)`), and counts the same; tests/test_models_cmd.py checks both
against each other on the embedded model.

`for_model` finds the files of a model already here and never downloads or converts: the
embedded default's converted folder, a hub id's cached snapshot, a model folder; None when
they are not here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tunelab import home
from tunelab.local import catalog, hub, model_source

SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token",
                  "mask_token")


class ChatTokenizer:
    """tokenizer.json plus the chat template, counting as the transformers tokenizer does."""

    def __init__(self, folder: Path) -> None:
        from tokenizers import Tokenizer

        self.folder = folder
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        config = _json(folder / "tokenizer_config.json")
        self.template = _chat_template(folder, config)
        self.special = {key: _token_text(config[key]) for key in SPECIAL_TOKENS
                        if config.get(key) is not None}

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        encoded = self._tokenizer.encode(text, add_special_tokens=add_special_tokens)
        return {"input_ids": encoded.ids}

    def apply_chat_template(self, chat: list[dict[str, Any]], tokenize: bool = True,
                            add_generation_prompt: bool = False) -> list[int] | str:
        from transformers.utils.chat_template_utils import render_jinja_template

        if self.template is None:
            raise ValueError(f"{self.folder}: the tokenizer has no chat template")
        rendered, _ = render_jinja_template(conversations=[chat], chat_template=self.template,
                                            add_generation_prompt=add_generation_prompt,
                                            **self.special)
        text = rendered[0]
        # transformers encodes the rendered chat without adding special tokens again
        return self(text)["input_ids"] if tokenize else text


def for_model(model: str | None) -> ChatTokenizer | None:
    """The counting tokenizer of base model `model` if its files are here, else None."""
    folder = _folder(model)
    if folder is None or not (folder / "tokenizer.json").is_file():
        return None
    tokenizer = ChatTokenizer(folder)
    return tokenizer if tokenizer.template is not None else None


def _folder(model: str | None) -> Path | None:
    if model is None or model.strip().lower() in model_source.EMBEDDED_ALIASES:
        converted = sorted((home.cache_dir() / "models").glob(f"{model_source.EMBEDDED_NAME}-*"))
        return next((folder for folder in reversed(converted)
                     if (folder / "config.json").is_file()), None)
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    name = hub.parse(model)
    return hub.cached_config_folder(name) if name is not None and not name.gguf else None


def _chat_template(folder: Path, config: dict[str, Any]) -> str | None:
    jinja = folder / catalog.CHAT_TEMPLATE_FILES[0]
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    template = _json(folder / catalog.CHAT_TEMPLATE_FILES[1]).get("chat_template") \
        or config.get("chat_template")
    if isinstance(template, list):  # named templates: the default one
        named = {item.get("name"): item.get("template") for item in template
                 if isinstance(item, dict)}
        template = named.get("default")
    return template if isinstance(template, str) else None


def _token_text(value: Any) -> str:
    return value.get("content", "") if isinstance(value, dict) else str(value)


def _json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
