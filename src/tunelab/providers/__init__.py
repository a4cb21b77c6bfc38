"""Providers: one small Protocol (base.py), one file per kind, one entry per name here.

`get_provider(name)` builds a provider. OpenAI-compatible endpoints (openai, kimi, and any
named in TUNELAB_HOME/providers.yaml) are profiles, i.e. data, served by one class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from tunelab.errors import UsageError
from tunelab.providers.base import Provider, ProviderSettings
from tunelab.providers.local import build as _build_local
from tunelab.providers.vertex import build as _build_vertex
from tunelab.registry import JobRecord

Factory = Callable[[ProviderSettings], Provider]


def _openai_compatible(name: str) -> Factory:
    def build(settings: ProviderSettings) -> Provider:
        from tunelab.providers.openai_compat import OpenAICompatProvider
        from tunelab.providers.profiles import find_profile

        profile = find_profile(name)
        if profile is None:  # removed from providers.yaml after this dict was built
            raise UsageError(f"unknown provider {name!r}", fix="see TUNELAB_HOME/providers.yaml")
        return OpenAICompatProvider(profile, base_url=settings.base_url, retry=settings.retry)

    return build


# name -> factory(ProviderSettings). A new kind of provider adds one line here.
PROVIDERS: dict[str, Factory] = {
    "openai": _openai_compatible("openai"),
    "kimi": _openai_compatible("kimi"),
    "local": _build_local,
    "vertex": _build_vertex,
}


def provider_names() -> list[str]:
    """Every name `--provider` accepts: the built-ins plus endpoints from providers.yaml."""
    from tunelab.providers.profiles import load_profiles

    return sorted(set(PROVIDERS) | set(load_profiles()))


def get_provider(name: str, settings: ProviderSettings | None = None, *,
                 base_url: str | None = None) -> Provider:
    """Build the provider called `name`. `settings` say where it points (a proxy, a local
    server, Vertex's project and bucket); `base_url` alone is the common short form."""
    factory = PROVIDERS.get(name)
    if factory is None:
        from tunelab.providers.profiles import find_profile

        if find_profile(name) is None:
            raise UsageError(f"unknown provider {name!r}",
                             fix=f"use one of {', '.join(provider_names())}, or declare it "
                                 "in TUNELAB_HOME/providers.yaml")
        factory = _openai_compatible(name)
    settings = settings or ProviderSettings()
    if base_url:
        settings = replace(settings, base_url=base_url)
    return factory(settings)


def job_provider(record: JobRecord | None, settings: ProviderSettings | None = None, *,
                 name: str | None = None, base_url: str | None = None) -> Provider:
    """The provider a registry job lives on: its provider at the endpoint it was made on.
    `name` and `base_url` (the CLI's --provider and --base-url) win over the record's; a job
    the registry does not know (record None) needs `name`."""
    chosen = name or (record.provider if record else None)
    if chosen is None:
        raise UsageError("no provider for a job the registry does not know",
                         fix="pass --provider NAME")
    settings = settings or ProviderSettings()
    endpoint = base_url or (record.endpoint if record else None) or settings.base_url
    return get_provider(chosen, replace(settings, base_url=endpoint))
