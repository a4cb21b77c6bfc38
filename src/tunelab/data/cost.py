"""Billing: tokens capped per example, OpenAI's default epochs, and a cost table per model.

The epochs rule is the one OpenAI documents (and the cookbook restates): 3 epochs, raised so
examples x epochs reaches 100 (at most 25 epochs), lowered so it stays under 25,000 (at
least 1).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

from tunelab.data.pricing import Price

TARGET_EPOCHS = 3
MIN_TARGET_EXAMPLES = 100
MAX_TARGET_EXAMPLES = 25_000
MIN_DEFAULT_EPOCHS = 1
MAX_DEFAULT_EPOCHS = 25


def default_epochs(examples: int) -> int:
    """The epochs OpenAI picks when the job does not set n_epochs."""
    if examples <= 0:
        return TARGET_EPOCHS
    if examples * TARGET_EPOCHS < MIN_TARGET_EXAMPLES:
        return min(MAX_DEFAULT_EPOCHS, MIN_TARGET_EXAMPLES // examples)
    if examples * TARGET_EPOCHS > MAX_TARGET_EXAMPLES:
        return max(MIN_DEFAULT_EPOCHS, MAX_TARGET_EXAMPLES // examples)
    return TARGET_EPOCHS


def billing_tokens(per_example: Iterable[int], limit: int) -> int:
    """Tokens billed per epoch: every example counts, but none beyond the model's limit."""
    return sum(min(limit, tokens) for tokens in per_example)


@dataclass(frozen=True)
class CostRow:
    provider: str
    model: str
    epochs: int | None
    training_tokens: int | None  # billed tokens x epochs; None where training is impossible
    training_cost: float | None
    inference_per_1k: float  # dollars per 1,000 requests shaped like the dataset's turns
    as_of: str
    source: str

    def as_dict(self) -> dict:
        row = asdict(self)
        for key in ("training_cost", "inference_per_1k"):
            row[key] = None if row[key] is None else round(row[key], 6)
        return row


def cost_table(per_example: Sequence[int], epochs: int, prices: Sequence[Price], *,
               mean_input: float, mean_output: float) -> list[CostRow]:
    """One row per priced model. Token counts come from the target's tokenizer for all rows,
    so rows of other tokenizer families are estimates."""
    rows = []
    billed = _billing_by_limit(per_example, {price.max_train_tokens for price in prices})
    for price in prices:
        inference = 1000 * price.inference_cost(mean_input, mean_output)
        if not price.trainable:
            rows.append(CostRow(price.provider, price.model, None, None, None, inference,
                                price.as_of, price.source))
            continue
        tokens = billed[price.max_train_tokens] * epochs
        rows.append(CostRow(price.provider, price.model, epochs, tokens,
                            tokens * price.training_per_1m / 1e6, inference,  # type: ignore[operator]
                            price.as_of, price.source))
    return rows


def _billing_by_limit(per_example: Sequence[int], limits: Iterable[int]) -> dict[int, int]:
    """billing_tokens for several limits in one pass: only the long examples differ."""
    limits = sorted(limits)
    total = sum(per_example)
    long = [tokens for tokens in per_example if tokens > limits[0]] if limits else []
    return {limit: total - sum(tokens - limit for tokens in long if tokens > limit)
            for limit in limits}
