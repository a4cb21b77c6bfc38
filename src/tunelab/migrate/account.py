"""The account a migration reads: an OpenAI-compatible endpoint (OpenAI itself by default).

Inventory and pull need calls beyond the provider contract (every job of the account, the
model list with shutdown dates, file downloads); only OpenAICompatProvider offers them, so
the provider is checked for that type once here.
"""

from __future__ import annotations

from tunelab.errors import UsageError
from tunelab.providers.base import ProviderSettings
from tunelab.providers.openai_compat import OpenAICompatProvider
from tunelab.providers.retry import RetryPolicy
from tunelab.registry import JobRecord


def open_account(provider: str = "openai", base_url: str | None = None,
                 retry: RetryPolicy | None = None) -> OpenAICompatProvider:
    from tunelab.providers import get_provider

    built = get_provider(provider, ProviderSettings(base_url=base_url,
                                                    retry=retry or RetryPolicy()))
    if not isinstance(built, OpenAICompatProvider):
        raise UsageError(f"--provider {provider}: migrate reads OpenAI-compatible accounts "
                         "(their jobs, files and model list)",
                         fix="use --provider openai or an endpoint from providers.yaml; "
                             f"{provider} is a place to retrain on: `--to {provider}`")
    return built


def account_of(job: JobRecord) -> OpenAICompatProvider:
    """The account an imported job lives on, at the endpoint it was imported from."""
    endpoint = job.endpoint if (job.endpoint or "").startswith(("http://", "https://")) else None
    return open_account(job.provider, endpoint)
