"""Prices as data: the packaged pricing.json, overridden row by row by TUNELAB_HOME/pricing.json.

A row is one model on one provider: training price (None where the provider cannot
fine-tune, e.g. Kimi), inference prices, the longest training example it accepts, and the
date and URL the figures come from. All prices are USD per 1M tokens.

A row may also carry the model's lifecycle: `fine_tuning_closes` (no new jobs from that day),
`shutdown` (the model and its fine-tunes stop answering), `lifecycle_source` and
`lifecycle_note`. The table's `providers` section holds what applies to a whole provider
(the day it stops taking any fine-tuning job). A user row matched on provider+model replaces
only the keys it names, so a negotiated price keeps the packaged shutdown date and a user can
move a date without restating the prices; a row for a new model needs every price field.
tunelab.data.lifecycle reads these fields; nothing here judges dates.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from datetime import date
from importlib import resources

from tunelab.errors import UsageError
from tunelab.home import home_file

DEFAULT_MODELS = {
    "openai": "gpt-4o-mini-2024-07-18",
    "vertex": "gemini-2.5-flash",
    "kimi": "moonshot-v1-8k",
    "local": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "fireworks": "accounts/fireworks/models/qwen3-8b",
    "azure": "gpt-4.1-mini-2025-04-14",  # trains SFT and DPO (gpt-4o-mini: SFT only)
    "together": "Qwen/Qwen3-8B",  # as migrate_destinations.json's together base
}
# For preference pairs where DEFAULT_MODELS' model trains no DPO (OpenAI: the gpt-4.1 family).
DEFAULT_DPO_MODELS = {"openai": "gpt-4.1-mini-2025-04-14"}
AZURE_TUNED = ".ft-"  # Azure names a fine-tune gpt-4.1-2025-04-14.ft-0a1b2c...
_VERSION_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{3,4})$")
FIELDS = ("provider", "model", "training_per_1m", "input_per_1m", "output_per_1m",
          "max_train_tokens", "as_of", "source")
LIFECYCLE_FIELDS = ("fine_tuning_closes", "shutdown", "lifecycle_source", "lifecycle_note")
# A price no source read states is written "unknown" (Together's $ rates: only on its
# pricing page): the row is a target all the same, its cost shown as unknown, never guessed.
# An unknown max_train_tokens counts examples up to UNKNOWN_LIMIT, as for an endpoint the
# table has no row for (data.check's fallback).
UNKNOWN = "unknown"
PRICE_FIELDS = ("training_per_1m", "input_per_1m", "output_per_1m")
UNKNOWN_LIMIT = 65536
# A row that trains DPO names its source in dpo_source; dpo_training_per_1m is null where
# no source gives the price.


@dataclass(frozen=True)
class Price:
    provider: str
    model: str
    training_per_1m: float | None  # None: no fine-tuning, unless the table says "unknown"
    input_per_1m: float | None  # None: unknown
    output_per_1m: float | None
    max_train_tokens: int
    as_of: str
    source: str
    fine_tuning_closes: date | None = None
    shutdown: date | None = None
    lifecycle_source: str = ""
    lifecycle_note: str = ""
    dpo_source: str = ""  # where it says this model trains DPO; "" when it does not
    dpo_training_per_1m: float | None = None  # None: DPO offered, no source gives a price
    unknown: frozenset[str] = frozenset()  # the fields the table says are "unknown"

    @property
    def trainable(self) -> bool:
        return self.training_per_1m is not None or "training_per_1m" in self.unknown

    @property
    def offers_dpo(self) -> bool:
        return bool(self.dpo_source)

    def training_rate(self, method: str) -> float | None:
        """Dollars per 1M trained tokens for `method` (config.MethodName); None: unknown."""
        return self.dpo_training_per_1m if method == "dpo" else self.training_per_1m

    def inference_cost(self, input_tokens: float, output_tokens: float) -> float | None:
        """Dollars for one request of this size (None when a price is unknown)."""
        if self.input_per_1m is None or self.output_per_1m is None:
            return None
        return (input_tokens * self.input_per_1m + output_tokens * self.output_per_1m) / 1e6


@dataclass(frozen=True)
class ProviderTerms:
    """What a provider's table says for all its models: the day it takes no new fine-tuning
    job, dated milestones before that (shown, not enforced: they depend on the account), and
    the endpoints (base URLs) that keep this calendar."""

    provider: str
    fine_tuning_closes: date | None
    source: str
    note: str = ""
    milestones: tuple[tuple[date, str], ...] = ()
    endpoints: tuple[str, ...] = ()
    closed: bool = False  # its fine-tuning API is gone: never offered, always refused


def load_pricing() -> list[Price]:
    """Every price row: the packaged table, with the user's file replacing keys or adding rows."""
    merged: dict[tuple[str, str], tuple[dict, str]] = {}
    for where, document in _documents():
        for raw in _models(document, where):
            key = (raw["provider"], raw["model"])
            merged[key] = ({**merged.get(key, ({}, where))[0], **raw}, where)
    return [_price(raw, where) for raw, where in merged.values()]


def load_provider_terms() -> dict[str, ProviderTerms]:
    """The `providers` section of the table, the user's file replacing the keys it names."""
    merged: dict[str, tuple[dict, str]] = {}
    for where, document in _documents():
        section = document.get("providers", {})
        if not isinstance(section, dict):
            raise UsageError(f"{where}: `providers` must be an object keyed by provider name",
                             fix='e.g. {"providers": {"openai": {"fine_tuning_closes": '
                                 '"2027-01-06", "source": "https://..."}}}')
        for name, raw in section.items():
            merged[name] = ({**merged.get(name, ({}, where))[0], **raw}, where)
    return {name: _terms(name, raw, where) for name, (raw, where) in merged.items()}


def find_price(provider: str, model: str, prices: list[Price] | None = None) -> Price | None:
    """The row for `model` on `provider`: exact name, else a dated version of it.

    Fine-tuned names (ft:gpt-4o-mini-2024-07-18:org:suffix:id) are priced as their base.
    """
    prices = load_pricing() if prices is None else prices
    name = base_model(model)
    candidates = [row for row in prices if row.provider == provider]
    for row in candidates:
        if row.model == name:
            return row
    for row in candidates:
        if undated(row.model) == undated(name):
            return row
    return None


def inference_cost_per_1k(provider: str, model: str, input_tokens: float,
                          output_tokens: float) -> float | None:
    """Dollars for 1,000 requests of this average size, or None if the model has no price."""
    row = find_price(provider, model)
    cost = None if row is None else row.inference_cost(input_tokens, output_tokens)
    return None if cost is None else 1000 * cost


def default_model(provider: str, method: str = "supervised") -> str:
    if method == "dpo" and provider in DEFAULT_DPO_MODELS:
        return DEFAULT_DPO_MODELS[provider]
    return DEFAULT_MODELS.get(provider) or DEFAULT_MODELS["openai"]


def base_model(model: str) -> str:
    """The base a fine-tuned or checkpoint name was built on: ft:BASE:org:suffix:id[:ckpt-step-N]
    (OpenAI) or BASE.ft-JOBHEX (Azure) -> BASE; any other name is its own base."""
    if model.startswith("ft:"):
        return model.split(":")[1]
    return model.split(AZURE_TUNED)[0]  # Azure's BASE.ft-JOBHEX


def undated(model: str) -> str:
    """gpt-4o-mini-2024-07-18, gpt-3.5-turbo-0125, gemini-2.0-flash-001 -> the family name."""
    return _VERSION_SUFFIX.sub("", model)


def parse_day(value: object, where: str, key: str) -> date | None:
    """A YYYY-MM-DD string (or null) from the table; anything else names the file and key."""
    if value is None:
        return None
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise UsageError(f"{where}: {key} {value!r} is not a date",
                         fix="write it as YYYY-MM-DD, or null") from None


def _documents() -> list[tuple[str, dict]]:
    """(where, parsed table): the packaged one, then the user's override when there is one."""
    packaged = resources.files("tunelab.data").joinpath("pricing.json").read_text("utf-8")
    documents = [("packaged pricing.json", _load(packaged, "packaged pricing.json"))]
    override = home_file("pricing.json")
    if override is not None:
        documents.append((str(override), _load(override.read_text("utf-8"), str(override))))
    return documents


def _invalid(where: str, error: object) -> UsageError:
    return UsageError(f"{where}: not a valid price table ({error})",
                      fix="each row needs " + ", ".join(FIELDS))


def _load(text: str, where: str) -> dict:
    try:
        document = json.loads(text)
    except ValueError as error:
        raise _invalid(where, error) from None
    if not isinstance(document, dict):
        raise _invalid(where, "not a JSON object")
    return document


def _models(document: dict, where: str) -> list[dict]:
    rows = document.get("models", [])
    if not isinstance(rows, list) or not all(
            isinstance(row, dict) and "provider" in row and "model" in row for row in rows):
        raise _invalid(where, "`models` must be a list of rows, each with provider and model")
    return rows


def _price(raw: dict, where: str) -> Price:
    unknown = frozenset(field for field in (*PRICE_FIELDS, "max_train_tokens")
                        if raw.get(field) == UNKNOWN)
    stand_in = {field: None for field in PRICE_FIELDS} | {"max_train_tokens": UNKNOWN_LIMIT}
    try:
        price = Price(**{field: stand_in[field] if field in unknown else raw[field]
                         for field in FIELDS}, unknown=unknown)
    except (KeyError, TypeError) as error:
        raise _invalid(where, f"{raw.get('provider')}/{raw.get('model')}: {error!r}") from None
    key = f"{price.provider}/{price.model}"
    return replace(price,
                   fine_tuning_closes=parse_day(raw.get("fine_tuning_closes"), where,
                                                f"{key} fine_tuning_closes"),
                   shutdown=parse_day(raw.get("shutdown"), where, f"{key} shutdown"),
                   lifecycle_source=str(raw.get("lifecycle_source") or ""),
                   lifecycle_note=str(raw.get("lifecycle_note") or ""),
                   dpo_source=str(raw.get("dpo_source") or ""),
                   dpo_training_per_1m=_dpo_price(raw.get("dpo_training_per_1m"), where, key))


def _dpo_price(value: object, where: str, key: str) -> float | None:
    if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
        return value  # type: ignore[return-value]
    raise UsageError(f"{where}: {key} dpo_training_per_1m {value!r} is not a number",
                     fix="write USD per 1M tokens, or null where no source gives one")


def _terms(name: str, raw: dict, where: str) -> ProviderTerms:
    milestones = []
    for item in raw.get("milestones", []):
        day = parse_day(item.get("date"), where, f"{name} milestone date")
        if day is not None:
            milestones.append((day, str(item.get("what", ""))))
    endpoints = raw.get("endpoints", [])
    if not isinstance(endpoints, list):
        raise UsageError(f"{where}: {name} endpoints must be a list of base URLs",
                         fix='e.g. "endpoints": ["https://api.openai.com/v1"]')
    return ProviderTerms(name, parse_day(raw.get("fine_tuning_closes"), where,
                                         f"{name} fine_tuning_closes"),
                         str(raw.get("source") or ""), str(raw.get("note") or ""),
                         tuple(milestones), tuple(str(url) for url in endpoints),
                         closed=raw.get("closed") is True)
