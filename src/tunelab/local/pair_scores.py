"""Preference pairs as tokens, and how much a model likes each answer of a pair.

A pair is one conversation up to the user's last message and two answers to it, OpenAI's
preference row: `{"input": {"messages": [...]}, "preferred_output": [answer],
"non_preferred_output": [answer]}`. Each answer is encoded as the whole chat ending in it,
with labels on that answer only (encoding.py; assistant turns inside the input are context,
as OpenAI trains only the outputs), and a model's score for it is the summed log-probability
of those labels: what DPO compares, what its reference pass computes once, and what `compare
--eval prefs.jsonl` ranks with (`pair_logps`, `reward_accuracy`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tunelab.errors import DataError
from tunelab.local.batching import collate
from tunelab.local.encoding import IGNORE, Encoded, EncodedSet, encode_example

if TYPE_CHECKING:
    from tunelab.local.assistant_loss import AssistantLoss

# Padded tokens per scoring batch (no backward pass: as validation.py's budget).
BATCH_TOKENS = 4096


@dataclass
class Pair:
    """One encoded pair; `reference` is (preferred, non-preferred) summed log-probabilities
    under the reference model, filled in before training (reference_logps.py)."""

    preferred: Encoded
    non_preferred: Encoded
    reference: tuple[float, float] | None = field(default=None, compare=False)

    def __len__(self) -> int:  # both sequences are trained on: the batch's token count
        return len(self.preferred) + len(self.non_preferred)

    @property
    def labels(self) -> list[int]:  # EncodedSet.loss_tokens counts both answers
        return self.preferred.labels + self.non_preferred.labels


def encode_pairs(tokenizer: Any, rows: list[dict], *, max_length: int | None,
                 source: str) -> EncodedSet:
    """Every pair whose two answers keep a label after cutting at `max_length` (None:
    whole); `dropped` names the others by their 1-based row number."""
    result = EncodedSet(source_count=len(rows))
    for number, row in enumerate(rows, 1):
        conversation, answers = split_row(row, source, number)
        encoded = [encode_example(tokenizer, [*conversation, answer], source=source,
                                  number=number) for answer in answers]
        result.full_lengths.append(sum(map(len, encoded)))
        if max_length is not None and any(len(one) > max_length for one in encoded):
            result.truncated += 1
            encoded = [Encoded(one.input_ids[:max_length], one.labels[:max_length])
                       for one in encoded]
        # A label at position 0 is never predicted (nothing precedes it): need one later.
        if all(any(label != IGNORE for label in one.labels[1:]) for one in encoded):
            result.items.append(Pair(*encoded))
        else:
            result.dropped.append(number)
    return result


def split_row(row: Any, source: str, number: int) -> tuple[list[dict], list[dict]]:
    """(the input messages as context, [preferred answer, non-preferred answer])."""
    try:
        messages = row["input"]["messages"]
        answers = [row["preferred_output"][0], row["non_preferred_output"][0]]
    except (KeyError, IndexError, TypeError):
        messages, answers = None, []
    if not isinstance(messages, list) or not all(isinstance(one, dict) for one in answers) \
            or len(answers) != 2:
        raise DataError(f"row {number} is not a preference pair", path=source,
                        fix='each row needs {"input": {"messages": [...]}, "preferred_output": '
                            '[answer], "non_preferred_output": [answer]}; run `tunelab data '
                            'check FILE`')
    context = [{**message, "weight": 0} for message in messages]  # no loss on the input
    return context, [{**answer, "role": "assistant"} for answer in answers]


def pair_rows(items: Sequence[Pair]) -> list[Encoded]:
    """The pairs' sequences as one batch orders them: every preferred, then every other."""
    return [pair.preferred for pair in items] + [pair.non_preferred for pair in items]


def sequence_logps(scorer: AssistantLoss, sequences: Sequence[Encoded],
                   pad_id: int) -> list[float]:
    """Each sequence's summed log-probability of its labels under `scorer`'s model as it is
    now, in the order given: no gradient, no dropout, no autocast (as validation.py), in
    batches of BATCH_TOKENS, longest first."""
    import torch

    device = next(scorer.parameters()).device
    order = sorted(range(len(sequences)), key=lambda index: -len(sequences[index]))
    scores = [0.0] * len(sequences)
    was_training = scorer.model.training
    scorer.eval()
    try:
        with torch.no_grad(), torch.autocast(device_type=device.type, enabled=False):
            for batch in _budgeted(order, sequences):
                tensors = {key: value.to(device) for key, value in
                           collate([sequences[index] for index in batch], pad_id).items()}
                for index, value in zip(batch, scorer.sequence_logps(**tensors).tolist(),
                                        strict=True):
                    scores[index] = value
    finally:
        scorer.train(was_training)
    return scores


def _budgeted(order: list[int], sequences: Sequence[Encoded]) -> list[list[int]]:
    batches: list[list[int]] = []
    for index in order:  # longest first: a batch's width is its first sequence's length
        if batches and (len(batches[-1]) + 1) * len(sequences[batches[-1][0]]) <= BATCH_TOKENS:
            batches[-1].append(index)
        else:
            batches.append([index])
    return batches


def pair_scores(scorer: AssistantLoss, pairs: Sequence[Pair],
                pad_id: int) -> list[tuple[float, float]]:
    """(preferred, non-preferred) summed log-probabilities of each pair under the model."""
    scores = sequence_logps(scorer, pair_rows(pairs), pad_id)
    return list(zip(scores[:len(pairs)], scores[len(pairs):], strict=True))


def pair_logps(model: Any, tokenizer: Any, rows: list[dict], *,
               source: str = "pairs") -> list[tuple[float, float] | None]:
    """For `compare --eval prefs.jsonl`: (preferred, non-preferred) log-probabilities of each
    row's answers under `model` (a loaded transformers or peft model), whole (not cut);
    None for a row whose answer the model's context cannot hold."""
    from tunelab.local.validation import context_length, loss_for

    encoded = encode_pairs(tokenizer, rows, max_length=context_length(model), source=source)
    scores = iter(pair_scores(loss_for(model), encoded.items, tokenizer.pad_token_id))
    dropped = set(encoded.dropped)
    return [None if number in dropped else next(scores) for number in range(1, len(rows) + 1)]


def reward_accuracy(scores: Sequence[tuple[float, float] | None]) -> float | None:
    """The share of scored pairs whose preferred answer has the higher log-probability."""
    scored = [pair for pair in scores if pair is not None]
    if not scored:
        return None
    return sum(preferred > other for preferred, other in scored) / len(scored)
