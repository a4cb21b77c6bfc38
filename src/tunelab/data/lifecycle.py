"""Model lifecycle as data: when a model stops taking fine-tuning jobs and when it shuts down.

The dates live beside the prices in pricing.json (each row with its source URL, overridable by
TUNELAB_HOME/pricing.json like a price); this module only reads them and counts days. A live
`shutdown_date` from the provider's model list (GET /v1/models) wins over the table, since the
provider knows its own calendar better than a packaged file.

A calendar binds the endpoints the table names (OpenAI's: api.openai.com), whatever profile
reaches them; `calendar_for(base_url)` says which calendar, if any, an endpoint keeps, so
`tunelab serve` or another OpenAI-compatible server is never held to OpenAI's dates.

Rows whose dates are known but whose prices are not (Azure's) sit in the table's `lifecycle`
section, read by `lifecycle_rows()`. Such a row may carry `existing_customer_closes`: the later
day until which customers who fine-tuned there before may still train (Azure's "for existing
customers only"), while `fine_tuning_closes` is the day it closed for everyone else. A provider
whose terms say `closed` has no fine-tuning API left (Mistral, Cohere): it is never offered.

The clock is `today()`: TUNELAB_TODAY=YYYY-MM-DD sets it, so tests and demos can stand on any
day without touching the system clock.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date
from urllib.parse import urlsplit

from tunelab.data import pricing
from tunelab.errors import UsageError

TODAY_ENV = "TUNELAB_TODAY"
LIVE_SOURCE = "GET /v1/models shutdown_date"


@dataclass(frozen=True)
class Lifecycle:
    provider: str
    model: str
    fine_tuning_closes: date | None  # no new fine-tuning job from this day on
    shutdown: date | None  # the model and every fine-tune built on it stop answering
    source: str  # where the dates come from (a URL, or the live model list)
    note: str = ""
    # Until this day, customers who fine-tuned here before may still train after
    # fine_tuning_closes (Azure's existing customers); None: one day for everyone.
    existing_customer_closes: date | None = None

    def is_shut_down(self, now: date | None = None) -> bool:
        return self.shutdown is not None and (now or today()) >= self.shutdown

    def fine_tuning_closed(self, now: date | None = None) -> bool:
        return self.fine_tuning_closes is not None and (now or today()) >= self.fine_tuning_closes


def today() -> date:
    """The day tunelab believes it is: TUNELAB_TODAY when set, else the system's date."""
    value = os.environ.get(TODAY_ENV, "").strip()
    if not value:
        return date.today()
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{TODAY_ENV}={value!r} is not a date",
                         fix=f"set {TODAY_ENV} as YYYY-MM-DD, or unset it") from None


def days_left(day: date | None, *, now: date | None = None) -> int | None:
    """Days from `now` (default today()) until `day`: 0 on the day, negative once past."""
    if day is None:
        return None
    return (day - (now or today())).days


def provider_terms(provider: str) -> pricing.ProviderTerms | None:
    """The provider-wide terms (closing day, source, milestones), or None when it has none."""
    return pricing.load_provider_terms().get(provider.strip().lower())


def provider_closes(provider: str) -> date | None:
    """The day `provider` stops taking any new fine-tuning job (OpenAI: 2027-01-06)."""
    terms = provider_terms(provider)
    return terms.fine_tuning_closes if terms else None


def calendar_for(base_url: str | None) -> str | None:
    """The provider whose calendar the endpoint at `base_url` keeps (matched on host and
    port against each provider's `endpoints`), or None for any other endpoint."""
    if not base_url:
        return None
    host = _host(base_url)
    for name, terms in pricing.load_provider_terms().items():
        if any(_host(endpoint) == host for endpoint in terms.endpoints):
            return name
    return None


def _host(url: str) -> str:
    parts = urlsplit(url.strip())
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{(parts.hostname or '').lower()}:{port}"


def lifecycle(provider: str, model: str, *, live_shutdown: date | None = None) -> Lifecycle | None:
    """The lifecycle of `model` (a base, fine-tuned or checkpoint name) on `provider`.

    None when nothing is known: no dated row, no provider closing day, no live date.
    """
    provider = provider.strip().lower()
    return of_price(pricing.find_price(provider, model), provider, model,
                    terms=provider_terms(provider), live_shutdown=live_shutdown)


def lifecycle_rows() -> list[Lifecycle]:
    """The table's `lifecycle` section (dates without prices), the user's file adding rows
    or replacing the keys it names, like prices."""
    merged: dict[tuple[str, str], tuple[dict, str]] = {}
    for where, document in pricing._documents():
        rows = document.get("lifecycle", [])
        if not isinstance(rows, list) or not all(
                isinstance(row, dict) and "provider" in row and "model" in row for row in rows):
            raise UsageError(f"{where}: `lifecycle` must be a list of rows, each with provider "
                             "and model", fix="see the packaged pricing.json's lifecycle rows")
        for raw in rows:
            key = (raw["provider"], raw["model"])
            merged[key] = ({**merged.get(key, ({}, where))[0], **raw}, where)
    return [_row(raw, where) for raw, where in merged.values()]


def _row(raw: dict, where: str) -> Lifecycle:
    name = f"{raw['provider']}/{raw['model']}"

    def day(key: str) -> date | None:
        return pricing.parse_day(raw.get(key), where, f"{name} {key}")

    return Lifecycle(raw["provider"], raw["model"], day("fine_tuning_closes"), day("shutdown"),
                     str(raw.get("source") or ""), str(raw.get("note") or ""),
                     day("existing_customer_closes"))


def _lifecycle_row(provider: str, model: str) -> Lifecycle | None:
    base = pricing.base_model(model)
    if not _has_rows(provider):
        return None
    for row in lifecycle_rows():
        if row.provider == provider and base in (row.model, pricing.undated(row.model)):
            return Lifecycle(provider, model, row.fine_tuning_closes, row.shutdown, row.source,
                             row.note, row.existing_customer_closes)
    return None


def _has_rows(provider: str) -> bool:
    """Whether the `lifecycle` section can hold `provider`: only providers the terms name
    (a cheap answer for the many cost rows of other providers)."""
    return provider_terms(provider) is not None


def closed_provider(provider: str) -> pricing.ProviderTerms | None:
    """The terms of a provider whose fine-tuning API is gone (Mistral, Cohere), or None."""
    terms = provider_terms(provider)
    return terms if terms is not None and terms.closed else None


def of_price(price: pricing.Price | None, provider: str, model: str, *,
             terms: pricing.ProviderTerms | None,
             live_shutdown: date | None = None) -> Lifecycle | None:
    """The lifecycle from an already loaded price row and provider terms; a row of the
    `lifecycle` section when the price row carries no dates (Azure's: dates, no prices)."""
    if live_shutdown is None and (price is None or (price.fine_tuning_closes is None and
                                                    price.shutdown is None)):
        row = _lifecycle_row(provider, model)
        if row is not None:
            return row
    shutdown = live_shutdown or (price.shutdown if price else None)
    row_closes = price.fine_tuning_closes if price else None
    provider_day = terms.fine_tuning_closes if terms else None
    # No job can start after the provider closes or after the model is gone: the earliest wins.
    closes = min((day for day in (row_closes, provider_day, shutdown) if day), default=None)
    if closes is None and shutdown is None:
        return None
    source = (price.lifecycle_source if price and price.lifecycle_source else "") or (
        terms.source if terms else "")
    note = price.lifecycle_note if price else ""
    if live_shutdown is not None:
        source = source or LIVE_SOURCE
        note = "; ".join(part for part in (f"shutdown {live_shutdown} from the provider's "
                                           "model list", note) if part)
    return Lifecycle(provider, model, closes, shutdown, source, note)
