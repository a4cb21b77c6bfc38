"""Providers: one small Protocol (base.py), one file per kind, one entry per name here.

`get_provider(name, settings)` builds a provider. Each entry of PROVIDERS is a factory and,
for a provider with settings of its own (Vertex's project and bucket), their model: each of
its fields becomes a flag of `tunelab train`, `sweep` and `migrate retrain`, shown under the
entry's panel in --help, and the factory gets the object as `settings.own`. OpenAI-compatible
endpoints (openai, kimi, and any named in TUNELAB_HOME/providers.yaml) are profiles, i.e.
data, served by one class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from tunelab.errors import UsageError
from tunelab.providers.azure import AzureSettings
from tunelab.providers.base import Provider, ProviderSettings
from tunelab.providers.fireworks import FireworksSettings
from tunelab.providers.fireworks import build as _build_fireworks
from tunelab.providers.local import build as _build_local
from tunelab.providers.together import TogetherSettings
from tunelab.providers.together import build as _build_together
from tunelab.providers.vertex import VertexSettings
from tunelab.providers.vertex import build as _build_vertex
from tunelab.registry import JobRecord

Factory = Callable[[ProviderSettings], Provider]


@dataclass(frozen=True)
class ProviderEntry:
    """One kind of provider: its factory, and its own settings model (a pydantic model whose
    fields, each with a description, are its flags), shown in --help under `panel`."""

    build: Factory
    settings: type[Any] | None = None
    panel: str | None = None


def _openai_compatible(name: str) -> ProviderEntry:
    def build(settings: ProviderSettings) -> Provider:
        from tunelab.providers.openai_compat import OpenAICompatProvider
        from tunelab.providers.profiles import find_profile

        profile = find_profile(name)
        if profile is None:  # removed from providers.yaml after this dict was built
            raise UsageError(f"unknown provider {name!r}", fix="see TUNELAB_HOME/providers.yaml")
        return OpenAICompatProvider(profile, base_url=settings.base_url, retry=settings.retry)

    return ProviderEntry(build)


def _build_azure(settings: ProviderSettings) -> Provider:
    from tunelab.providers.azure_provider import build  # loads the openai SDK: only here

    return build(settings)


# name -> entry. A new kind of provider adds one line here.
PROVIDERS: dict[str, ProviderEntry] = {
    "openai": _openai_compatible("openai"),
    "kimi": _openai_compatible("kimi"),
    "local": ProviderEntry(_build_local),
    "vertex": ProviderEntry(_build_vertex, VertexSettings, "Vertex AI (--provider vertex)"),
    "together": ProviderEntry(_build_together, TogetherSettings,
                              "Together AI (--provider together)"),
    "azure": ProviderEntry(_build_azure, AzureSettings, "Azure OpenAI (--provider azure)"),
    "fireworks": ProviderEntry(_build_fireworks, FireworksSettings,
                               "Fireworks AI (--provider fireworks)"),
}


def provider_entry(name: str) -> ProviderEntry | None:
    """The entry that builds `name`: a registered one, or the OpenAI-compatible kind for an
    endpoint in providers.yaml; None for a name neither knows."""
    if name in PROVIDERS:
        return PROVIDERS[name]
    from tunelab.providers.profiles import find_profile

    return _openai_compatible(name) if find_profile(name) is not None else None


def provider_names() -> list[str]:
    """Every name `--provider` accepts: the built-ins plus endpoints from providers.yaml."""
    from tunelab.providers.profiles import load_profiles

    return sorted(set(PROVIDERS) | set(load_profiles()))


def get_provider(name: str, settings: ProviderSettings | None = None, *,
                 base_url: str | None = None) -> Provider:
    """Build the provider called `name`. `settings` say where it points (a proxy, a local
    server) and hold its own settings (Vertex's project and bucket); `base_url` alone is the
    common short form."""
    entry = provider_entry(name)
    if entry is None:
        raise UsageError(f"unknown provider {name!r}",
                         fix=f"use one of {', '.join(provider_names())}, or declare it "
                             "in TUNELAB_HOME/providers.yaml")
    settings = settings or ProviderSettings()
    if base_url:
        settings = replace(settings, base_url=base_url)
    return entry.build(settings)


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
