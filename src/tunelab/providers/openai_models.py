"""The live model calendar of an OpenAI-compatible endpoint: GET /v1/models' `shutdown_date`.

OpenAI documents an optional `shutdown_date` (YYYY-MM-DD, or null) on each model of the list
and of a single model. It is read through the official SDK (newer versions declare the field,
older ones keep it among the model's extra fields; attribute access finds it in both).

The lookup is a courtesy on top of the packaged table, never a requirement: with no key, an
endpoint that lacks the route or the field, a network fault or a slow answer, it returns
nothing and the caller keeps the table's dates. So it never retries and never raises.
"""

from __future__ import annotations

from datetime import date

import openai

from tunelab.errors import AuthError
from tunelab.providers.profiles import Profile, resolve_key

LOOKUP_TIMEOUT_S = 10.0  # one GET; the table answers if the endpoint is slow


def shutdown_dates(profile: Profile, base_url: str | None = None) -> dict[str, date]:
    """Model id -> announced shutdown day, for every model the endpoint lists with one."""
    try:
        key = resolve_key(profile)
    except AuthError:
        return {}
    client = openai.OpenAI(api_key=key, base_url=(base_url or profile.base_url).rstrip("/"),
                           max_retries=0, timeout=LOOKUP_TIMEOUT_S)
    try:
        models = list(client.models.list())
    except (openai.OpenAIError, ValueError):  # ValueError: a body that is not a model list
        return {}
    dates = {}
    for model in models:
        day = _day(getattr(model, "shutdown_date", None))
        if day is not None:
            dates[model.id] = day
    return dates


def _day(value: object) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        return None
