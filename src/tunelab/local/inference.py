"""Chat with local weights: a base model, a LoRA adapter on its base, a merged or a full
fine-tune, on CUDA if present, else CPU.

What a name means (a job id, an `ft:` name, a run or adapter folder, a .gguf, a hub id) is
`tunelab.local.weights`'s answer; here we only load what it found.

Loaded models are kept for the life of the process: `compare` asks the same model for many
answers, and `chat` for many turns.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

from tunelab.errors import DataError
from tunelab.local import model_source
from tunelab.local.generation import BATCH_TOKENS, Generation, model_default, plan_batches
from tunelab.local.validation import Validation, encode_validation, loss_for, measure_validation
from tunelab.local.weights import Kind, Weights, resolve

# Tokenizers without a length limit report this placeholder (transformers' 1e30) or similar.
UNSET_LIMIT = 10**12


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    # the machine's time for this answer: its batch's wall time over the batch's rows
    seconds: float = 0.0


@dataclass(frozen=True)
class Prompt:
    """A chat rendered by the model's template and tokenized, ready to generate from."""

    ids: list[int]
    whole: bool = True  # False: the text was surely over the limit; only a prefix was counted


class ChatModel:
    """A loaded causal LM with its tokenizer and chat template."""

    def __init__(self, name: str, model: Any, tokenizer: Any) -> None:
        self.name = name
        self.model = model
        self.tokenizer = tokenizer

    def generate(self, messages: list[dict[str, Any]], **settings: Any) -> str:
        """The assistant's next message; `settings` as `complete_prompt` takes them."""
        return self.complete(messages, **settings).text

    def complete(self, messages: list[dict[str, Any]], **settings: Any) -> Completion:
        """Like `generate`, with the token counts a provider reports."""
        return self.complete_prompt(self.prompt(messages).ids, **settings)

    def complete_prompt(self, prompt_ids: list[int], **settings: Any) -> Completion:
        """`complete` for a prompt already tokenized (see `prompt`); `settings` as
        `complete_prompts` takes them."""
        return self.complete_prompts([prompt_ids], **settings)[0]

    def complete_many(self, conversations: list[list[dict[str, Any]]],
                      **settings: Any) -> list[Completion]:
        """One answer per conversation, in their order, generated in batches."""
        return self.complete_prompts([self.prompt(messages).ids for messages in conversations],
                                     **settings)

    def complete_prompts(self, prompts: list[list[int]], *, max_new_tokens: int | None = None,
                         temperature: float | None = None, top_p: float | None = None,
                         seed: int | None = None, repetition_penalty: float | None = None,
                         penalize_prompt: bool | None = None,
                         batch_tokens: int = BATCH_TOKENS,
                         progress: Callable[[int], None] | None = None) -> list[Completion]:
        """One completion per tokenized prompt, in their order, generated in batches of
        similar length (local/generation.py's plan_batches; `batch_tokens` bounds a batch's
        KV cache). A setting left None takes this model's default (local/generation.py).
        `progress` is told each batch's number of answers once they are done.

        Greedy (temperature 0) answers are the ones each prompt gets alone (a test holds
        it). Sampling: each batch is seeded with `seed`, so the same prompts with the same
        settings give the same answers again; but a prompt's draws depend on the prompts it
        shares its batch with, so it may be answered otherwise alone or among others."""
        given = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p,
                 "seed": seed, "repetition_penalty": repetition_penalty,
                 "penalize_prompt": penalize_prompt}
        chosen = replace(self.defaults, **{k: v for k, v in given.items() if v is not None})
        completions: dict[int, Completion] = {}
        for batch in plan_batches([len(ids) for ids in prompts], chosen.max_new_tokens,
                                  batch_tokens=batch_tokens):
            answers = self._generate_batch([prompts[index] for index in batch], chosen)
            completions.update(zip(batch, answers, strict=True))
            if progress:
                progress(len(batch))
        return [completions[index] for index in range(len(prompts))]

    def _generate_batch(self, prompts: list[list[int]], chosen: Generation) -> list[Completion]:
        """One `generate` call over `prompts`, padded on the left, each row stopping at its
        own end of turn (or max_new_tokens)."""
        import torch

        width = max(len(ids) for ids in prompts)
        # A row's padding repeats its own first token (masked out, so the model never sees
        # it): the repetition penalty reads the whole row, and a token the prompt holds
        # anyway changes nothing there, where a pad token would be penalized as if said.
        rows = [[ids[0] if ids else self.tokenizer.pad_token_id or 0] * (width - len(ids)) + ids
                for ids in prompts]
        mask = [[0] * (width - len(ids)) + [1] * len(ids) for ids in prompts]
        device = self.model.device
        started = time.perf_counter()
        torch.manual_seed(chosen.seed)
        with torch.inference_mode():
            output = self.model.generate(
                input_ids=torch.tensor(rows, device=device),
                attention_mask=torch.tensor(mask, device=device),
                pad_token_id=self.tokenizer.pad_token_id,
                # the penalty's prompt is the padded width: every row's prompt ends there
                **chosen.hf_kwargs(width))
        share = (time.perf_counter() - started) / len(prompts)
        return [self._completion(len(ids), output[row, width:].tolist(), share)
                for row, ids in enumerate(prompts)]

    def _completion(self, prompt_tokens: int, generated: list[int],
                    seconds: float) -> Completion:
        """A row's answer: its tokens up to and with its first end-of-turn token (what a
        lone generate returns); after it, a finished row holds only padding."""
        ends = [index for index, token in enumerate(generated) if token in self._end_ids]
        new_ids = generated[:ends[0] + 1] if ends else generated
        text = self.tokenizer.decode(new_ids, skip_special_tokens=True).strip()
        return Completion(text, prompt_tokens, len(new_ids), seconds)

    @cached_property
    def _end_ids(self) -> frozenset[int]:
        """The tokens `generate` stops a row at: its generation config's eos_token_id."""
        config = getattr(self.model, "generation_config", None)
        ends = getattr(config, "eos_token_id", None)
        if ends is None:
            return frozenset()
        return frozenset([ends] if isinstance(ends, int) else ends)

    @cached_property
    def defaults(self) -> Generation:
        """tunelab's generation defaults, with what the model's own generation config sets."""
        return model_default(getattr(self.model, "generation_config", None))

    @cached_property
    def context_length(self) -> int | None:
        """The longest sequence, prompt and answer together, the model was built for: its
        config's max_position_embeddings or its tokenizer's model_max_length, the smaller of
        those that are set. None when neither is."""
        limits = (getattr(self.model.config, "max_position_embeddings", None),
                  getattr(self.tokenizer, "model_max_length", None))
        real = [limit for limit in limits if isinstance(limit, int) and 0 < limit < UNSET_LIMIT]
        return min(real, default=None)

    def prompt(self, messages: list[dict[str, Any]], *, limit: int | None = None) -> Prompt:
        """The chat as the prompt `complete_prompt` takes. With `limit`, a text so long that
        it must be over `limit` tokens is counted only up to there: a huge prompt costs no
        more than a full one to refuse."""
        text = self._render(messages)
        if limit is not None:
            cut = limit * self._longest_token + 1  # no text this long fits in `limit` tokens
            if len(text) > cut:
                ids = self._tokenize(text[:cut])
                if len(ids) > limit:
                    return Prompt(ids, whole=False)
        return Prompt(self._tokenize(text))

    @cached_property
    def _longest_token(self) -> int:
        """Characters in the vocabulary's longest token: one token covers no more text."""
        return max((len(token) for token in self.tokenizer.get_vocab()), default=1)

    def validation(self, examples: list[dict[str, Any]]) -> Validation:
        """Loss and token accuracy over every assistant token of `examples`, by the function
        the trainer's validation uses (local/validation.py): one file, one number."""
        encoded = encode_validation(self.tokenizer, examples, source="eval")
        if not encoded.loss_tokens:
            raise DataError("no assistant tokens to score in the evaluation examples",
                            fix="give the eval file conversations that end with an assistant turn")
        return measure_validation(loss_for(self.model), encoded, self.tokenizer.pad_token_id)

    def _render(self, messages: list[dict[str, Any]]) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                  add_generation_prompt=True)

    def _tokenize(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]


def load_chat_model(ref: str | Weights) -> ChatModel:
    """Load the weights a name means (or already-resolved weights) for chat and scoring.
    Cached per process by folder, so every name for the same weights shares one model."""
    weights = ref if isinstance(ref, Weights) else resolve(ref)
    if weights.kind is Kind.ADAPTER:
        base_dir = resolve(weights.base).model_dir()
        return _load_adapter(str(weights.path), str(base_dir))
    return _load_plain(str(weights.model_dir()))


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@lru_cache(maxsize=2)
def _load_plain(model_dir: str) -> ChatModel:
    model = model_source.load_model(model_dir).to(_device())
    model.eval()
    return ChatModel(_label(Path(model_dir)), model, model_source.load_tokenizer(model_dir))


@lru_cache(maxsize=2)
def _load_adapter(folder: str, base_dir: str) -> ChatModel:
    from peft import PeftModel

    # A fresh base each time: PEFT injects its layers into the model it is given, which
    # would silently turn a cached base model into the tuned one.
    model = PeftModel.from_pretrained(model_source.load_model(base_dir), folder).to(_device())
    model.eval()
    return ChatModel(_label(Path(folder)), model, model_source.load_tokenizer(base_dir))


def _label(folder: Path) -> str:
    """run/adapter/ and run/model/ are named after their run (the job id)."""
    return folder.parent.name if folder.name in ("adapter", "model") else folder.name

