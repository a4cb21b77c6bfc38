"""A Hugging Face tokenizer as GGUF metadata: what llama.cpp and Ollama tokenize with.

Two families are written:
- byte-level BPE (GPT-2 style: SmolLM2, Llama 3, Qwen2/3): `tokenizer.ggml.model = gpt2`,
  the tokens in id order, the merges, and `tokenizer.ggml.pre`, the name llama.cpp knows the
  pre-tokenizer's split rule by. A wrong name tokenizes digits or contractions differently
  from training, silently; so a rule we can't name is refused rather than guessed.
- SentencePiece BPE with byte fallback (Mistral v0.x, Llama 2): `tokenizer.ggml.model =
  llama`, tokens with scores and types, read by gguf's own `LlamaHfVocab`.

The special ids and the BOS/EOS flags come from the loaded tokenizer itself: whether it puts
BOS first is asked by encoding a letter, not read from a config that may disagree.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunelab.errors import UsageError

# llama.cpp's names for the split rules of the byte-level tokenizers we support, keyed by
# the regex of the tokenizer.json `Split` pre-tokenizer that carries the rule.
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
               r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
SPLIT_NAMES = {LLAMA3_SPLIT: "llama-bpe", QWEN2_SPLIT: "qwen2"}
BYTE_LEVEL_ONLY = "gpt-2"  # ByteLevel with its own (GPT-2) regex, nothing before it
DIGITS_THEN_BYTE_LEVEL = "smollm"  # each digit alone, then GPT-2's regex

NORMAL, CONTROL, USER_DEFINED, UNUSED = 1, 3, 4, 5
SPECIAL_KINDS = ("bos", "eos", "unk", "pad")


@dataclass(frozen=True)
class Vocab:
    model: str  # tokenizer.ggml.model: gpt2 or llama
    pre: str  # tokenizer.ggml.pre
    tokens: list[str | bytes]
    types: list[int]
    scores: list[float] | None
    merges: list[str]
    special_ids: dict[str, int]  # bos, eos, unk, pad that the tokenizer names
    add_bos: bool
    add_eos: bool
    chat_template: str | None

    def add_to(self, writer: Any) -> None:
        """Put every tokenizer key on a gguf.GGUFWriter."""
        writer.add_tokenizer_model(self.model)
        writer.add_tokenizer_pre(self.pre)
        writer.add_token_list(self.tokens)
        writer.add_token_types(self.types)
        if self.scores is not None:
            writer.add_token_scores(self.scores)
        if self.merges:
            writer.add_token_merges(self.merges)
        for kind, token_id in self.special_ids.items():
            getattr(writer, f"add_{kind}_token_id")(token_id)
        writer.add_add_bos_token(self.add_bos)
        writer.add_add_eos_token(self.add_eos)
        if self.chat_template:
            writer.add_chat_template(self.chat_template)


def read_vocab(tokenizer: Any, vocab_size: int, *, pre: str | None = None) -> Vocab:
    """The GGUF view of `tokenizer` for a model with `vocab_size` embedding rows. `pre`,
    when given, is the pre-tokenizer name the base model's own GGUF declared."""
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    model = spec.get("model") or {}
    if model.get("type") != "BPE":
        raise _unsupported(f"a {model.get('type')} tokenizer model")
    special = _special_ids(tokenizer)
    flags = _special_flags(tokenizer, special)
    if model.get("byte_fallback"):
        tokens, types, scores = _sentencepiece_tokens(tokenizer, vocab_size)
        return Vocab("llama", "default", tokens, types, scores, [], special, *flags,
                     tokenizer.chat_template)
    tokens, types = _byte_level_tokens(tokenizer, vocab_size)
    return Vocab("gpt2", pre or pre_tokenizer_name(spec), tokens, types, None,
                 _merges(model), special, *flags, tokenizer.chat_template)


def pre_tokenizer_name(spec: dict[str, Any]) -> str:
    """llama.cpp's name for the split rule of a byte-level tokenizer.json (`spec`)."""
    steps = _flatten(spec.get("pre_tokenizer"))
    kinds = [step.get("type") for step in steps]
    for step in steps:
        if step.get("type") == "Split":
            pattern = (step.get("pattern") or {}).get("Regex")
            if pattern in SPLIT_NAMES:
                return SPLIT_NAMES[pattern]
            raise _unsupported(f"the pre-tokenizer split rule {pattern!r}")
    byte_level = next((step for step in steps if step.get("type") == "ByteLevel"), None)
    if byte_level is not None and byte_level.get("use_regex", True):
        if kinds == ["ByteLevel"]:
            return BYTE_LEVEL_ONLY
        digits = next((step for step in steps if step.get("type") == "Digits"), None)
        if kinds == ["Digits", "ByteLevel"] and digits and digits.get("individual_digits"):
            return DIGITS_THEN_BYTE_LEVEL
    raise _unsupported(f"the pre-tokenizer {kinds}")


def _flatten(pre_tokenizer: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not pre_tokenizer:
        return []
    if pre_tokenizer.get("type") == "Sequence":
        inner = pre_tokenizer.get("pretokenizers", [])
        return [step for each in inner for step in _flatten(each)]
    return [pre_tokenizer]


def _byte_level_tokens(tokenizer: Any, vocab_size: int) -> tuple[list[str | bytes], list[int]]:
    by_id = {token_id: token for token, token_id in tokenizer.get_vocab().items()}
    _check_fits(len(by_id), max(by_id) + 1, vocab_size)
    added = tokenizer.added_tokens_decoder
    tokens: list[str | bytes] = []
    types = []
    for token_id in range(vocab_size):
        if token_id not in by_id:  # an embedding row no token uses (vocabularies padded to 64)
            tokens.append(f"[PAD{token_id}]")
            types.append(UNUSED)
        elif token_id in added:
            tokens.append(added[token_id].content)
            types.append(CONTROL if added[token_id].special else USER_DEFINED)
        else:
            tokens.append(by_id[token_id])
            types.append(NORMAL)
    return tokens, types


def _sentencepiece_tokens(tokenizer: Any,
                          vocab_size: int) -> tuple[list[str | bytes], list[int], list[float]]:
    from gguf.vocab import LlamaHfVocab

    with tempfile.TemporaryDirectory() as folder:
        tokenizer.save_pretrained(folder)
        entries = list(LlamaHfVocab(Path(folder)).all_tokens())
    _check_fits(len(entries), len(entries), vocab_size)
    tokens: list[str | bytes] = [text for text, _score, _type in entries]
    scores = [float(score) for _text, score, _type in entries]
    types = [int(kind) for _text, _score, kind in entries]
    for token_id in range(len(entries), vocab_size):
        tokens.append(f"[PAD{token_id}]")
        scores.append(-1000.0)
        types.append(UNUSED)
    return tokens, types, scores


def _check_fits(count: int, needed_rows: int, vocab_size: int) -> None:
    if needed_rows > vocab_size:
        raise UsageError(f"the tokenizer has {count} tokens (ids up to {needed_rows - 1}) but "
                         f"the model only {vocab_size} embedding rows",
                         fix="export with the tokenizer the model was trained with")


def _merges(model: dict[str, Any]) -> list[str]:
    # tokenizers writes merges as "a b" strings or, since 0.20, as [a, b] pairs; a space
    # inside a piece is spelled U+0120-shifted in the pair form, as llama.cpp reads it.
    merges = model.get("merges") or []
    return [merge if isinstance(merge, str)
            else " ".join(part.replace(" ", chr(ord(" ") + 256)) for part in merge)
            for merge in merges]


def _special_ids(tokenizer: Any) -> dict[str, int]:
    ids = {kind: getattr(tokenizer, f"{kind}_token_id", None) for kind in SPECIAL_KINDS}
    return {kind: token_id for kind, token_id in ids.items() if isinstance(token_id, int)}


def _special_flags(tokenizer: Any, special: dict[str, int]) -> tuple[bool, bool]:
    """Whether the tokenizer adds BOS / EOS around plain text, as it does in training."""
    ids = tokenizer("a")["input_ids"]
    add_bos = "bos" in special and bool(ids) and ids[0] == special["bos"]
    add_eos = "eos" in special and bool(ids) and ids[-1] == special["eos"]
    return add_bos, add_eos


def _unsupported(what: str) -> UsageError:
    return UsageError(f"can't write {what} as a GGUF tokenizer",
                      fix="GGUF export supports byte-level BPE tokenizers (SmolLM2, Llama 3, "
                          "Qwen2/3) and SentencePiece BPE (Mistral); use --format hf")
