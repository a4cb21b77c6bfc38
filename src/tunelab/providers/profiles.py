"""OpenAI-compatible endpoints as data: a name, a base URL, where the key lives, what it can do.

Built-in profiles are `openai` and `kimi`. Users add or adjust endpoints in
TUNELAB_HOME/providers.yaml (or .json), for example:

    kimi:
      region: cn                      # api.moonshot.cn instead of api.moonshot.ai
    mylab:
      base_url: http://10.0.0.5:8000/v1
      key_env: MYLAB_API_KEY          # the *name* of the variable, never the key itself
      capabilities: {fine_tuning: true, chat: true, files: true, methods: [supervised, dpo]}

`methods` are the training methods the endpoint's fine-tuning API takes (supervised when not
given); OpenAI's takes DPO too (`method: {"type": "dpo"}`), for the models the price table
marks (data/pricing.json: dpo_source).

Keys are read from the environment (after loading .env files) at the moment a provider is
built, and never stored anywhere else.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tunelab import home
from tunelab.errors import AuthError, UsageError
from tunelab.providers.base import Capabilities

CONFIG_NAMES = ("providers.yaml", "providers.yml", "providers.json")
_PROFILE_KEYS = {"base_url", "key_env", "key_envs", "capabilities", "region", "docs"}


@dataclass(frozen=True)
class Profile:
    name: str
    base_url: str
    key_envs: tuple[str, ...]
    capabilities: Capabilities = Capabilities()
    regions: dict[str, str] = field(default_factory=dict)  # region name -> base URL
    docs: str = ""  # where to get a key


BUILTIN: dict[str, Profile] = {
    "openai": Profile(
        name="openai",
        base_url="https://api.openai.com/v1",
        key_envs=("OPENAI_API_KEY",),
        capabilities=Capabilities(methods=frozenset({"supervised", "dpo"})),
        docs="https://platform.openai.com/api-keys",
    ),
    # Moonshot documents chat completions and files, but no fine-tuning endpoint. Flip
    # fine_tuning to True here (or in providers.yaml) the day it ships one.
    "kimi": Profile(
        name="kimi",
        base_url="https://api.moonshot.ai/v1",
        key_envs=("MOONSHOT_API_KEY", "KIMI_API_KEY"),
        capabilities=Capabilities(fine_tuning=False, chat=True, files=True),
        regions={"global": "https://api.moonshot.ai/v1", "cn": "https://api.moonshot.cn/v1"},
        docs="https://platform.moonshot.ai/console/api-keys",
    ),
}


def config_path() -> Path | None:
    """The user's endpoints file in TUNELAB_HOME, if there is one."""
    for name in CONFIG_NAMES:
        candidate = home.home_file(name)
        if candidate is not None:
            return candidate
    return None


def _read_config(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".json":
            data = json.loads(text or "{}")
        else:
            import yaml

            data = yaml.safe_load(text) or {}
    except Exception as error:  # json's and yaml's parse errors share no useful base
        raise UsageError(f"{path}: cannot parse: {str(error).splitlines()[0]}",
                         fix="fix the file or remove it") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a mapping of endpoint names",
                         fix="see `tunelab train --help` for the providers.yaml format")
    return data


def _capabilities(raw: Any, base: Capabilities, where: str) -> Capabilities:
    if raw is None:
        return base
    known = {"fine_tuning", "chat", "files", "methods"}
    if not isinstance(raw, dict) or set(raw) - known:
        raise UsageError(f"{where}: capabilities must map {sorted(known - {'methods'})} to "
                         "true/false, and methods to a list", fix="fix the capabilities entry")
    switches = {key: bool(value) for key, value in raw.items() if key != "methods"}
    if "methods" in raw:
        switches["methods"] = _methods(raw["methods"], where)
    return replace(base, **switches)


def _methods(raw: Any, where: str) -> frozenset[str]:
    """The training methods an endpoint declares: names config.MethodName knows."""
    from typing import get_args

    from tunelab.config import MethodName

    known = get_args(MethodName)
    if not isinstance(raw, list) or not raw or any(name not in known for name in raw):
        raise UsageError(f"{where}: capabilities.methods must list training methods, got "
                         f"{raw!r}", fix=f"use some of {', '.join(known)}, e.g. "
                                         "methods: [supervised, dpo]")
    return frozenset(raw)


def _key_envs(entry: dict[str, Any], fallback: tuple[str, ...]) -> tuple[str, ...]:
    if "key_envs" in entry:
        return tuple(entry["key_envs"] or ())
    if "key_env" in entry:
        return (entry["key_env"],) if entry["key_env"] else ()
    return fallback


def _profile_from_entry(name: str, entry: Any, base: Profile | None, where: str) -> Profile:
    if not isinstance(entry, dict) or set(entry) - _PROFILE_KEYS:
        unknown = sorted(set(entry) - _PROFILE_KEYS) if isinstance(entry, dict) else []
        raise UsageError(f"{where}: endpoint {name!r} has unknown keys {unknown}"
                         if unknown else f"{where}: endpoint {name!r} must be a mapping",
                         fix=f"use only {sorted(_PROFILE_KEYS)}")
    if base is None and not entry.get("base_url"):
        raise UsageError(f"{where}: endpoint {name!r} needs a base_url",
                         fix="add base_url: https://host/v1")
    base = base or Profile(name=name, base_url="", key_envs=())
    base_url = entry.get("base_url") or base.base_url
    region = entry.get("region")
    if region is not None:
        if region not in base.regions:
            raise UsageError(f"{where}: {name}.region {region!r} is not one of "
                             f"{sorted(base.regions) or 'none'}", fix="fix the region")
        base_url = base.regions[region]
    return replace(base, name=name, base_url=str(base_url).rstrip("/"),
                   key_envs=_key_envs(entry, base.key_envs),
                   capabilities=_capabilities(entry.get("capabilities"), base.capabilities,
                                              where),
                   docs=entry.get("docs", base.docs))


def load_profiles() -> dict[str, Profile]:
    """Built-in profiles, adjusted and extended by TUNELAB_HOME/providers.yaml."""
    profiles = dict(BUILTIN)
    path = config_path()
    if path is None:
        return profiles
    for name, entry in _read_config(path).items():
        profiles[name] = _profile_from_entry(str(name), entry, profiles.get(name), str(path))
    return profiles


def find_profile(name: str) -> Profile | None:
    return load_profiles().get(name)


def no_fine_tuning(name: str) -> UsageError:
    """The error for training on an endpoint that offers chat and files only."""
    return UsageError(f"{name} has no fine-tuning API (its endpoint offers chat and files only)",
                      fix="train with --provider openai, --provider vertex or --provider "
                          f"local; {name} still works for test, chat and compare")


def resolve_key(profile: Profile) -> str:
    """The API key for `profile`, from the environment or .env files; AuthError names the fix."""
    if not profile.key_envs:
        # An endpoint declared without a key (e.g. a local `tunelab serve` on loopback).
        # The SDK insists on some string; this one authorises nothing.
        return "no-key"
    home.load_dotenv_files()
    for env in profile.key_envs:
        value = os.environ.get(env, "").strip()
        if value:
            return value
    names = " or ".join(profile.key_envs)
    where = f" (get one at {profile.docs})" if profile.docs else ""
    raise AuthError(f"no API key for {profile.name}: {names} is not set",
                    fix=f"export {profile.key_envs[0]}=... or add it to .env{where}")
