"""What is checked before a cloud job sends anything, in the order the door runs it:

    the provider can train -> it takes the method (and, for DPO, the model)
    -> the model's lifecycle (the table) -> the data -> the cost
    -> (with the key) the endpoint's own shutdown date

Nothing here prints, prompts or sends a byte; each check raises a TunelabError naming the
fix, or returns what the face shows (a warning, a report, an estimate).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from tunelab.errors import DataError, TunelabError, UsageError, command

if TYPE_CHECKING:
    from tunelab.providers.base import Capabilities, ProviderSettings

WARN_DAYS = 30  # fewer days than this before closing or shutdown: say so, and go on
WAYS_ON = ("train elsewhere: --provider together, --provider fireworks, --provider azure, "
           "--provider vertex, --provider local, or --provider NAME (an endpoint in "
           "providers.yaml)")


@runtime_checkable
class Standing(Protocol):
    """A provider's own settings that say whether the account fine-tuned there before
    (Azure's --existing-customer): None when the user has not said."""

    existing_customer: bool | None


def standing(own: object) -> bool | None:
    """What the provider's settings say of the account's standing (None: not said)."""
    return own.existing_customer if isinstance(own, Standing) else None


def refuse_closed(provider_name: str) -> None:
    """A provider whose fine-tuning API is gone (the table's terms: Mistral, Cohere) is
    refused by name, with the reason, the day and the source; never offered."""
    from tunelab.data.lifecycle import closed_provider

    closed = closed_provider(provider_name)
    if closed is not None:
        since = f" since {closed.fine_tuning_closes}" if closed.fine_tuning_closes else ""
        raise UsageError(f"{provider_name}'s fine-tuning API is closed{since}: {closed.note} "
                         f"(source: {closed.source})", fix=WAYS_ON)


def require_fine_tuning(provider_name: str) -> None:
    """Fail at once, before reading data or keys, if the provider cannot train: a closed
    fine-tuning API (Mistral's, Cohere's: the table's terms) or a chat-only endpoint."""
    from tunelab.providers.profiles import find_profile, no_fine_tuning

    refuse_closed(provider_name)
    profile = find_profile(provider_name)
    if profile is not None and not profile.capabilities.fine_tuning:
        raise no_fine_tuning(provider_name)


def require_method(provider_name: str, method: str, model: str | None,
                   settings: ProviderSettings | None = None) -> None:
    """Refuse, before any data is read or sent, a training method the provider does not
    take, and a DPO job for a model the price table says trains no DPO (its rows with
    dpo_source are the models that do; a model the table does not know is the provider's
    to judge)."""
    capabilities = _capabilities(provider_name, settings)
    if method not in capabilities.methods:
        why = f" ({capabilities.methods_note})" if capabilities.methods_note else ""
        others = [name for name in _providers_with(method) if name != provider_name]
        raise UsageError(f"{provider_name} cannot train {method} jobs: it trains "
                         f"{', '.join(sorted(capabilities.methods)) or 'nothing'}{why}",
                         fix=f"train {method} with " + (" or ".join(
                             f"--provider {name}" for name in others) or "another provider"))
    if method != "dpo" or model is None:
        return
    from tunelab.data.pricing import find_price, load_pricing

    prices = load_pricing()
    row = find_price(provider_name, model, prices)
    if row is None or row.offers_dpo:
        return
    takers = [price for price in prices if price.provider == provider_name and price.offers_dpo]
    raise UsageError(f"{model} cannot be trained with DPO on {provider_name}; the models that "
                     "can: " + (", ".join(price.model for price in takers) or "none listed")
                     + (f" (source: {takers[0].dpo_source})" if takers else ""),
                     fix=f"pass --model {takers[0].model}" if takers else
                     "add dpo_source to the model's row in TUNELAB_HOME/pricing.json")


def _capabilities(provider_name: str, settings: ProviderSettings | None) -> Capabilities:
    """What a provider can do, asked without its key: an endpoint's profile says it, any
    other provider is built (a build reads no key and sends nothing)."""
    from tunelab.providers import get_provider
    from tunelab.providers.profiles import find_profile

    profile = find_profile(provider_name)
    if profile is not None:
        return profile.capabilities
    return get_provider(provider_name, settings).capabilities


def _providers_with(method: str) -> list[str]:
    """The providers that train `method` (one that cannot be asked without a key is left
    out: this only names alternatives in a refusal)."""
    from tunelab.providers import provider_names

    found = []
    for name in provider_names():
        try:
            capabilities = _capabilities(name, None)
        except TunelabError:
            continue
        if capabilities.fine_tuning and method in capabilities.methods:
            found.append(name)
    return found


def lifecycle_gate(provider_name: str, base_url: str | None, model: str, *,
                   live_shutdown: date | None = None,
                   existing_customer: bool | None = None) -> str | None:
    """Refuse a job the provider's calendar no longer allows; else the warning to show, or
    None. The one gate for every provider: OpenAI's wind-down, Azure's two calendars (new and
    existing customers: `existing_customer`, None when not said) and any row of the table.

    A profile's calendar binds only the endpoints it names (OpenAI's: api.openai.com, see
    tunelab.data.lifecycle.calendar_for), so `tunelab serve` and other OpenAI-compatible
    servers are not held to it; a provider whose terms name no endpoints (Azure: a host per
    customer) is held to its calendar wherever it points. Runs before any data is read or
    sent, so a refused job uploads nothing.
    """
    from tunelab.data import lifecycle as lifecycles

    calendar = _calendar(provider_name, base_url)
    life = calendar and lifecycles.lifecycle(calendar, model, live_shutdown=live_shutdown)
    if not life:
        return None
    now = lifecycles.today()
    if life.is_shut_down(now):
        raise UsageError(f"{model} was shut down on {life.shutdown}, with every fine-tune built "
                         f"on it (source: {life.source})", fix=WAYS_ON)
    standing_note = _existing_customers_only(calendar, model, life, now, existing_customer)
    if standing_note is None and life.fine_tuning_closed(now):
        raise UsageError(f"{calendar} takes no new fine-tuning jobs for {model} since "
                         f"{life.fine_tuning_closes} (source: {life.source})", fix=WAYS_ON)
    closes = life.existing_customer_closes if standing_note is not None \
        else life.fine_tuning_closes
    close = lifecycles.days_left(closes, now=now)
    end = lifecycles.days_left(life.shutdown, now=now)
    left = [day for day in (close, end) if day is not None]
    near = bool(left) and min(left) < WARN_DAYS
    if not near and not standing_note:
        return None
    parts = [standing_note or "",
             f"fine-tuning on {calendar} closes in {close} days ({closes})"
             if near and close is not None else "",
             f"{model} and its fine-tunes shut down in {end} days ({life.shutdown})"
             if near and end is not None else ""]
    return "; ".join(part for part in parts if part) + f" (source: {life.source})"


def _existing_customers_only(calendar: str, model: str, life: Any, now: date,
                             existing_customer: bool | None) -> str | None:
    """Between the day a model closed for new customers and the later day it closes for
    existing ones: refuse one who says they are new, warn one who has not said; "" for an
    existing customer (nothing to warn of), None outside that window."""
    later = life.existing_customer_closes
    if later is None or not life.fine_tuning_closed(now) or now >= later:
        if later is not None and now >= later:
            raise UsageError(f"{calendar} takes no fine-tuning jobs for {model} since {later}, "
                             f"not even from existing customers (source: {life.source})",
                             fix=WAYS_ON)
        return None
    only = (f"since {life.fine_tuning_closes} {calendar} trains {model} only for customers who "
            f"fine-tuned there before, until at least {later}")
    if existing_customer is None:
        return (f"{only}; {calendar} refuses the job otherwise (--existing-customer says you "
                "are one, --no-existing-customer stops here)")
    if not existing_customer:
        raise UsageError(only + f" (source: {life.source})", fix=WAYS_ON)
    return ""


def _calendar(provider_name: str, base_url: str | None) -> str | None:
    """Whose calendar a job on `provider_name` at `base_url` keeps, if any."""
    from tunelab.data import lifecycle as lifecycles

    found = lifecycles.calendar_for(_endpoint(provider_name, base_url))
    if found is not None:
        return found
    terms = lifecycles.provider_terms(provider_name)
    return provider_name if terms is not None and not terms.endpoints else None


def live_shutdown(provider_name: str, base_url: str | None, model: str) -> date | None:
    """The endpoint's own shutdown_date for `model` (or its base), when its calendar binds it
    and a key is present; None otherwise. One cheap GET that never fails the command."""
    from tunelab.data import lifecycle as lifecycles
    from tunelab.data.pricing import base_model
    from tunelab.providers.openai_models import shutdown_dates
    from tunelab.providers.profiles import find_profile

    profile = find_profile(provider_name)
    endpoint = _endpoint(provider_name, base_url)
    if profile is None or lifecycles.calendar_for(endpoint) is None:
        return None
    dates = shutdown_dates(profile, endpoint)
    return dates.get(model) or dates.get(base_model(model))


def _endpoint(provider_name: str, base_url: str | None) -> str | None:
    """The base URL a provider name and --base-url reach (None for vertex and local)."""
    from tunelab.providers.profiles import find_profile

    profile = find_profile(provider_name)
    return (base_url or profile.base_url) if profile is not None else None


def check_data(path: Path, *, provider: str, model: str | None, epochs: int | None,
               role: str = "FILE", method: str = "supervised") -> Any:
    """The data engineer's full check; DataError when the file breaks a rule, or when it
    holds the other method's rows (chat examples for dpo, preference pairs otherwise)."""
    from tunelab.data.check import check_file
    from tunelab.data.preference import file_format

    if not path.is_file():
        raise UsageError(f"{role} {path} does not exist", fix="check the path")
    pairs = file_format(path) == "preference"
    if pairs and method != "dpo":
        raise DataError(f"{role} holds preference pairs (OpenAI DPO rows), which train only "
                        f"with --method dpo, not {method}", path=str(path),
                        fix="add --method dpo")
    if method == "dpo" and not pairs:
        raise DataError(f"{role} holds chat examples, and --method dpo trains on preference "
                        "pairs", path=str(path),
                        fix=f"make pairs with `{command('tunelab', 'data', 'pairs', path)} "
                            "--rejected-from MODEL -o PAIRS.jsonl`, or drop --method dpo")
    report = check_file(path, provider=provider, model=model, epochs=epochs)
    if not report.ok:
        first = sorted(report.errors.listed, key=lambda p: p.line or 0)[0]
        raise DataError(f"{report.errors.total} error(s); first: {first.code}: {first.message}",
                        path=str(path), line=first.line,
                        fix=f"run `{command('tunelab', 'data', 'check', path)}` for every problem")
    return report


@dataclass
class CostEstimate:
    provider: str
    model: str
    epochs: int
    billed_tokens: int  # per epoch, capped per example at the model's limit
    dollars: float | None  # None when no training price is known for this model

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def needs_confirmation(self, max_cost: float | None) -> bool:
        """Ask unless a --max-cost was given and a known estimate stays under it."""
        if max_cost is None or self.dollars is None:
            return True
        return self.dollars > max_cost


def estimate_cost(report: Any, *, provider: str, model: str, epochs: int | None,
                  method: str = "supervised") -> CostEstimate:
    """The job's dollars at `method`'s rate (DPO has its own; unknown where no source
    states it)."""
    from tunelab.data.pricing import find_price

    epochs = epochs or report.epochs
    price = find_price(provider, model)
    rate = price.training_rate(method) if price is not None else None
    dollars = None
    if rate is not None:  # else unknown or none
        dollars = report.billing_tokens * epochs * rate / 1e6
    return CostEstimate(provider, model, epochs, report.billing_tokens, dollars)


def total(estimates: list[CostEstimate]) -> CostEstimate:
    """One estimate for several jobs on one file: dollars summed (None when any is unknown)."""
    first = estimates[0]
    dollars = [estimate.dollars for estimate in estimates]
    return CostEstimate(first.provider, first.model, sum(e.epochs for e in estimates),
                        first.billed_tokens, None if None in dollars else sum(
                            d or 0.0 for d in dollars))
