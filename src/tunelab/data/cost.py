"""Billing: tokens capped per example, OpenAI's default epochs, and a cost table per model.

The epochs rule is the one OpenAI documents (and the cookbook restates): 3 epochs, raised so
examples x epochs reaches 100 (at most 25 epochs), lowered so it stays under 25,000 (at
least 1).

Each row also carries the model's lifecycle (tunelab.data.lifecycle): a model whose
fine-tuning has closed is not priced for training, and a shut-down one is not priced at all,
so the table never offers a target that cannot be used.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import date

from tunelab.data import lifecycle as lifecycles
from tunelab.data.pricing import Price, ProviderTerms, load_provider_terms

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


def billing_tokens(per_example: Iterable[int], limit: int, shared: Iterable[int] = ()) -> int:
    """Tokens billed per epoch: every example counts, but none beyond the model's limit.

    A preference pair is two sequences (input + each answer) whose input is billed once:
    its sequences go in `per_example` and its input in `shared`, which is taken off again.
    Cutting each sequence at the limit and its input at the limit keeps that exact."""
    return (sum(min(limit, tokens) for tokens in per_example)
            - sum(min(limit, tokens) for tokens in shared))


@dataclass(frozen=True)
class CostRow:
    provider: str
    model: str
    epochs: int | None
    training_tokens: int | None  # billed tokens x epochs; None where training is impossible
    training_cost: float | None
    inference_per_1k: float | None  # dollars per 1,000 requests shaped like the dataset's
    # turns; None once the model is shut down
    as_of: str
    source: str
    status: str = "open"  # open | inference_only | closed (no new jobs) | shut_down
    fine_tuning_closes: date | None = None
    shutdown: date | None = None
    days_to_close: int | None = None  # negative once past
    days_to_shutdown: int | None = None
    lifecycle_source: str = ""
    method: str = "supervised"  # or "dpo": training priced at the row's DPO rate

    def as_dict(self) -> dict:
        row = asdict(self)
        for key in ("training_cost", "inference_per_1k"):
            row[key] = None if row[key] is None else round(row[key], 6)
        for key in ("fine_tuning_closes", "shutdown"):
            row[key] = None if row[key] is None else row[key].isoformat()
        return row


def cost_table(per_example: Sequence[int], epochs: int, prices: Sequence[Price], *,
               mean_input: float, mean_output: float, now: date | None = None,
               terms: dict[str, ProviderTerms] | None = None, method: str = "supervised",
               shared: Sequence[int] = ()) -> list[CostRow]:
    """One row per priced model. Token counts come from the target's tokenizer for all rows,
    so rows of other tokenizer families are estimates. `now` (default: lifecycle.today())
    decides which models are closed or shut down.

    With method "dpo" only the models that train DPO have a row, priced at their DPO rate
    (training_cost None where no source gives it), and billing is counted as in
    billing_tokens: `per_example` holds the pairs' sequences, `shared` their inputs."""
    now = now or lifecycles.today()
    terms = load_provider_terms() if terms is None else terms
    rows = []
    if method == "dpo":
        prices = [price for price in prices if price.offers_dpo]
    limits = {price.max_train_tokens for price in prices}
    billed = _billing_by_limit(per_example, limits)
    once = _billing_by_limit(shared, limits) if shared else dict.fromkeys(limits, 0)
    for price in prices:
        life = lifecycles.of_price(price, price.provider, price.model,
                                   terms=terms.get(price.provider))
        dates = {"status": "open", **_dates(life, now)}
        rate = price.training_rate(method)
        if dates["status"] == "open" and not (price.offers_dpo if method == "dpo"
                                              else price.trainable):
            dates["status"] = "inference_only"
        per_request = price.inference_cost(mean_input, mean_output)
        inference = None if per_request is None else 1000 * per_request
        if dates["status"] == "shut_down":
            rows.append(CostRow(price.provider, price.model, None, None, None, None,
                                price.as_of, price.source, **dates, method=method))
        elif dates["status"] != "open":
            rows.append(CostRow(price.provider, price.model, None, None, None, inference,
                                price.as_of, price.source, **dates, method=method))
        else:
            limit = price.max_train_tokens
            tokens = (billed[limit] - once[limit]) * epochs
            rows.append(CostRow(price.provider, price.model, epochs, tokens,
                                None if rate is None else tokens * rate / 1e6,
                                inference, price.as_of, price.source, **dates, method=method))
    return rows


def _dates(life: lifecycles.Lifecycle | None, now: date) -> dict:
    """The lifecycle columns of a cost row: status, the two days and the days left to each."""
    if life is None:
        return {}
    status = ("shut_down" if life.is_shut_down(now) else
              "closed" if life.fine_tuning_closed(now) else "open")
    return {"status": status, "fine_tuning_closes": life.fine_tuning_closes,
            "shutdown": life.shutdown,
            "days_to_close": lifecycles.days_left(life.fine_tuning_closes, now=now),
            "days_to_shutdown": lifecycles.days_left(life.shutdown, now=now),
            "lifecycle_source": life.source}


def _billing_by_limit(per_example: Sequence[int], limits: Iterable[int]) -> dict[int, int]:
    """billing_tokens for several limits in one pass: only the long examples differ."""
    limits = sorted(limits)
    total = sum(per_example)
    long = [tokens for tokens in per_example if tokens > limits[0]] if limits else []
    return {limit: total - sum(tokens - limit for tokens in long if tokens > limit)
            for limit in limits}
