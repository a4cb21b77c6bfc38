"""Prices as data: the packaged pricing.json, overridden row by row by TUNELAB_HOME/pricing.json.

A row is one model on one provider: training price (None where the provider cannot
fine-tune, e.g. Kimi), inference prices, the longest training example it accepts, and the
date and URL the figures come from. All prices are USD per 1M tokens.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources

from tunelab.errors import UsageError
from tunelab.home import home

DEFAULT_MODELS = {
    "openai": "gpt-4o-mini-2024-07-18",
    "vertex": "gemini-2.5-flash",
    "kimi": "moonshot-v1-8k",
    "local": "HuggingFaceTB/SmolLM2-135M-Instruct",
}
_VERSION_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{3,4})$")
FIELDS = ("provider", "model", "training_per_1m", "input_per_1m", "output_per_1m",
          "max_train_tokens", "as_of", "source")


@dataclass(frozen=True)
class Price:
    provider: str
    model: str
    training_per_1m: float | None
    input_per_1m: float
    output_per_1m: float
    max_train_tokens: int
    as_of: str
    source: str

    @property
    def trainable(self) -> bool:
        return self.training_per_1m is not None

    def inference_cost(self, input_tokens: float, output_tokens: float) -> float:
        """Dollars for one request of this size."""
        return (input_tokens * self.input_per_1m + output_tokens * self.output_per_1m) / 1e6


def load_pricing() -> list[Price]:
    """Every price row: the packaged table, with the user's file replacing or adding rows."""
    packaged = resources.files("tunelab.data").joinpath("pricing.json").read_text("utf-8")
    rows = {(row.provider, row.model): row for row in _parse(packaged, "packaged pricing.json")}
    override = home() / "pricing.json"
    if override.is_file():
        for row in _parse(override.read_text("utf-8"), str(override)):
            rows[(row.provider, row.model)] = row
    return list(rows.values())


def find_price(provider: str, model: str, prices: list[Price] | None = None) -> Price | None:
    """The row for `model` on `provider`: exact name, else a dated version of it.

    Fine-tuned names (ft:gpt-4o-mini-2024-07-18:org:suffix:id) are priced as their base.
    """
    prices = load_pricing() if prices is None else prices
    name = _base_model(model)
    candidates = [row for row in prices if row.provider == provider]
    for row in candidates:
        if row.model == name:
            return row
    for row in candidates:
        if _undated(row.model) == _undated(name):
            return row
    return None


def inference_cost_per_1k(provider: str, model: str, input_tokens: float,
                          output_tokens: float) -> float | None:
    """Dollars for 1,000 requests of this average size, or None if the model has no price."""
    row = find_price(provider, model)
    return None if row is None else 1000 * row.inference_cost(input_tokens, output_tokens)


def default_model(provider: str) -> str:
    return DEFAULT_MODELS.get(provider) or DEFAULT_MODELS["openai"]


def _base_model(model: str) -> str:
    if model.startswith("ft:"):
        return model.split(":")[1]
    return model


def _undated(model: str) -> str:
    """gpt-4o-mini-2024-07-18, gpt-3.5-turbo-0125, gemini-2.0-flash-001 -> the family name."""
    return _VERSION_SUFFIX.sub("", model)


def _parse(text: str, source: str) -> list[Price]:
    fix = "each row needs " + ", ".join(FIELDS)
    try:
        rows = json.loads(text)["models"]
        return [Price(**{field: row[field] for field in FIELDS}) for row in rows]
    except (ValueError, KeyError, TypeError) as error:
        raise UsageError(f"{source}: not a valid price table ({error})", fix=fix) from None
