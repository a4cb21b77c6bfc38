"""How a local model answers unless told otherwise: the one home of the generation defaults
that `tunelab test`, `chat`, `compare`, the after-training samples and `serve` use.

The numbers were chosen by measurement: bench/generation_defaults.py, written up in
bench/README.md ("Generation defaults"). In short: greedy (reproducible; sampling at T=0.7
did no better), with transformers' repetition penalty at 1.2 over prompt and answer: on the
demo's 5 prompts it took the tuned model from 2 loops to none and from 2 answers in the
prompt's language to 5 (1.1 looped more, 1.3 answered in English throughout).

A model's own generation_config.json wins over tunelab's repetition penalty when it sets one
(SmolLM2-135M-Instruct sets none: its file holds only the token ids). Temperature and top_p
stay tunelab's: a comparison must be reproducible unless the user asks for sampling.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any


@dataclass(frozen=True)
class Generation:
    """Generation settings in transformers' terms. temperature 0 means greedy."""

    # the style shows within 128; whole answers need more (natasha's median 277 tokens), at
    # ~10 tokens/s on a 2-core CPU. Every command takes --max-new-tokens.
    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    repetition_penalty: float = 1.2  # 1.0 = off; >1 lowers the odds of a token said before
    seed: int = 0
    # transformers' way: the prompt's tokens count as said too. On the demo that is what turned
    # the English questions' answers English (the Russian system prompt's tokens are
    # penalized); on the answer's tokens only, loops stopped but every answer stayed Russian.
    penalize_prompt: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def hf_kwargs(self, prompt_length: int) -> dict[str, Any]:
        """The keyword arguments for `model.generate` on a prompt of `prompt_length`
        tokens, sampling or greedy."""
        chosen: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "do_sample": False,
                                  "top_k": None}
        if self.temperature > 0:
            chosen.update(do_sample=True, temperature=self.temperature, top_p=self.top_p)
        if self.repetition_penalty != 1.0:
            from transformers import LogitsProcessorList, RepetitionPenaltyLogitsProcessor

            ignored = 0 if self.penalize_prompt else prompt_length
            chosen["logits_processor"] = LogitsProcessorList([RepetitionPenaltyLogitsProcessor(
                self.repetition_penalty, prompt_ignore_length=ignored)])
        return chosen


DEFAULT = Generation()


def model_default(model_config: Any) -> Generation:
    """DEFAULT, with the repetition penalty the model's own generation config sets, if any."""
    own = getattr(model_config, "repetition_penalty", None)
    return replace(DEFAULT, repetition_penalty=float(own)) if own is not None else DEFAULT


# How many tokens one batch of answers may hold, prompts and answers together (rows x
# (longest prompt + max_new_tokens)). It bounds the KV cache: about 45 KB a token for the
# embedded 135M model in fp32 (30 layers x 3 KV heads x 64 x 2 x 4 bytes), so 8192 tokens
# is about 370 MB; a 1.5B model's is about 28 KB a token in bf16. The row cap keeps a
# batch of short prompts from holding rows that all wait for the longest answer.
BATCH_TOKENS = 8192
BATCH_ROWS = 16


def plan_batches(lengths: list[int], max_new_tokens: int, *, batch_tokens: int = BATCH_TOKENS,
                 batch_rows: int = BATCH_ROWS) -> list[list[int]]:
    """The prompts (by index into `lengths`, their token counts) grouped into batches,
    longest first: prompts of similar length share a batch, so little of it is padding, and
    the largest batch comes first, so a batch too large for memory fails at once. Each
    batch holds at most `batch_rows` rows and, past its first row, `batch_tokens` tokens."""
    order = sorted(range(len(lengths)), key=lambda index: -lengths[index])
    batches: list[list[int]] = []
    for index in order:
        if batches:
            batch = batches[-1]
            # sorted longest first: the batch's first prompt is its longest
            width = lengths[batch[0]] + max_new_tokens
            if len(batch) < batch_rows and (len(batch) + 1) * width <= batch_tokens:
                batch.append(index)
                continue
        batches.append([index])
    return batches
