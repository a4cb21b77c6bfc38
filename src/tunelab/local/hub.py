"""Hub models by name: what a hub id needs, how big it is, and fetching it on first use.

Every path that takes a model name (train, its dry run, `models pull`, chat, compare,
export) comes here through `model_source.locate`, so a hub id resolves the same way
everywhere:

    cached with its weights     the snapshot folder; no request at all
    offline (HF_HUB_OFFLINE=1   one line naming the fix; never a request
      or `tunelab --offline`)
    otherwise                   `plan` lists the files the model needs with their sizes
                                (the hub's tree listing), the face's consent sees the plan
                                (size, where it goes; a question past ASK_ABOVE), the disk is
                                checked, and huggingface_hub downloads it (resumable, its
                                own progress bar, HF_TOKEN for gated models)

Only the files a model needs are fetched: config, tokenizer and chat template files,
generation_config, and the safetensors weights with their index (pytorch .bin only where a
repo has no safetensors). A GGUF repo is named with its file or quantization after a colon:
`org/repo-GGUF:Q4_K_M` or `org/repo-GGUF:model.Q4_K_M.gguf`.

HF_ENDPOINT and the cache folder (HF_HUB_CACHE, HF_HOME) are read when a call is made, not
when huggingface_hub was imported, so a process that changes them (tests, the server) is
obeyed. HF_TOKEN is huggingface_hub's own business: tunelab never reads, prints or stores it.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import fnmatch
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunelab.errors import AuthError, NotFoundError, TransientProviderError, UsageError, command

CONFIG_FILES = ("config.json", "generation_config.json", "tokenizer.json",
                "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja",
                "chat_template.json")
WEIGHT_FILES = ("*.safetensors", "model.safetensors.index.json")
LEGACY_WEIGHT_FILES = ("pytorch_model*.bin", "pytorch_model.bin.index.json")
DEFAULT_REVISION = "main"
# Downloads bigger than this are asked about first (--yes skips the question).
# TUNELAB_ASK_DOWNLOAD_GB changes it (0 asks about every download).
ASK_ABOVE_GB = 2.0
OFFLINE_FIX = ("unset HF_HUB_OFFLINE (and leave out --offline) to download it, or name a "
               "model folder, a .gguf file or a hub id already in the cache "
               "(`tunelab models list`)")


@dataclass(frozen=True)
class HubName:
    """A hub id as typed: `org/repo`, with `:FILE-OR-QUANT` for a GGUF repo."""

    repo_id: str
    gguf: str | None = None  # a .gguf file name, or a quantization such as Q4_K_M
    revision: str = DEFAULT_REVISION

    def __str__(self) -> str:
        return f"{self.repo_id}:{self.gguf}" if self.gguf else self.repo_id


def parse(name: str) -> HubName | None:
    """The hub id `name` spells, or None: two plain parts `org/repo`, maybe `:gguf`."""
    repo, _, gguf = name.strip().partition(":")
    parts = repo.split("/")
    if len(parts) != 2 or not all(part and not part.startswith(".") for part in parts):
        return None
    if any(char.isspace() for char in repo) or (gguf == "" and name.strip().endswith(":")):
        return None
    return HubName(repo, gguf or None)


@dataclass(frozen=True)
class FileSize:
    path: str
    size: int


@dataclass(frozen=True)
class Download:
    """What fetching a model would do, before anything is fetched."""

    name: HubName
    commit: str
    files: tuple[FileSize, ...]  # every file the model needs
    missing: tuple[FileSize, ...]  # those not in the cache yet
    where: Path  # the repo's folder in the Hugging Face cache
    gated: bool = False

    @property
    def total_bytes(self) -> int:
        return sum(item.size for item in self.files)

    @property
    def download_bytes(self) -> int:
        return sum(item.size for item in self.missing)

    def as_dict(self) -> dict[str, Any]:
        return {"model": str(self.name), "commit": self.commit, "where": str(self.where),
                "total_bytes": self.total_bytes, "download_bytes": self.download_bytes,
                "files": [item.path for item in self.files],
                "to_download": [item.path for item in self.missing], "gated": self.gated}


# consent -------------------------------------------------------------------------------------
Consent = Callable[[Download], None]  # returns to go ahead; raises UsageError to refuse


def ask_above_bytes() -> int:
    raw = os.environ.get("TUNELAB_ASK_DOWNLOAD_GB")
    try:
        gigabytes = float(raw) if raw else ASK_ABOVE_GB
    except ValueError:
        raise UsageError(f"TUNELAB_ASK_DOWNLOAD_GB={raw!r} is not a number",
                         fix="set it to a size in GB, e.g. 2, or unset it") from None
    return int(gigabytes * 1e9)


def needs_question(plan: Download) -> bool:
    return plan.download_bytes > ask_above_bytes()


def without_question(plan: Download) -> None:
    """The consent of a face that cannot ask (the server's worker, a library caller): a
    download under the threshold goes ahead, a bigger one is refused with the command that
    asks."""
    if needs_question(plan):
        raise UsageError(f"model {plan.name}: {gigabytes(plan.download_bytes)} to download, "
                         f"over the {gigabytes(ask_above_bytes())} fetched without asking",
                         fix="fetch it first with "
                             f"`{command('tunelab', 'models', 'pull', str(plan.name))}`")


_CONSENT: contextvars.ContextVar[Consent] = contextvars.ContextVar(
    "tunelab_download_consent", default=without_question)


@contextlib.contextmanager
def consenting(consent: Consent) -> Iterator[None]:
    """Downloads inside this block go through `consent` (the CLI's asks at the terminal)."""
    token = _CONSENT.set(consent)
    try:
        yield
    finally:
        _CONSENT.reset(token)


def gigabytes(size: int) -> str:
    return f"{size / 1e9:.2f} GB" if size >= 1e8 else f"{size / 1e6:.1f} MB"


# the environment ---------------------------------------------------------------------------
def offline() -> bool:
    return any(os.environ.get(key, "").strip().upper() in ("1", "ON", "YES", "TRUE")
               for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def endpoint() -> str | None:
    value = os.environ.get("HF_ENDPOINT")
    return value.rstrip("/") if value else None


def cache_root() -> Path:
    """The Hugging Face hub cache, as huggingface_hub would pick it now."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() \
        / "huggingface" / "hub"


def repo_folder(name: HubName) -> Path:
    return cache_root() / ("models--" + name.repo_id.replace("/", "--"))


def _kwargs() -> dict[str, Any]:
    return {"cache_dir": str(cache_root()), "endpoint": endpoint()}


# the cache -------------------------------------------------------------------------------------
def cached(name: HubName) -> Path | None:
    """The model's folder (or GGUF file) in the cache, weights included; None if any part
    of it is missing. Never a request."""
    if name.gguf:
        return _cached_gguf(name)
    folder = _cached_snapshot(name)
    return folder if folder is not None and has_weights(folder) else None


def cached_config_folder(name: HubName) -> Path | None:
    """The cached snapshot holding at least the model's config.json (weights or not)."""
    folder = _cached_snapshot(name)
    return folder if folder is not None and (folder / "config.json").is_file() else None


def _cached_snapshot(name: HubName) -> Path | None:
    refs = repo_folder(name) / "refs" / name.revision
    try:
        commit = refs.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    folder = repo_folder(name) / "snapshots" / commit
    return folder if folder.is_dir() else None


def _cached_gguf(name: HubName) -> Path | None:
    folder = _cached_snapshot(name)
    if folder is None:
        return None
    found = [path for path in folder.glob("*.gguf") if _gguf_matches(path.name, name.gguf)]
    return found[0] if len(found) == 1 and found[0].is_file() else None


def has_weights(folder: Path) -> bool:
    """Whether a snapshot holds complete weights: every shard its index names, or one file."""
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = folder / index_name
        if index.is_file():
            import json

            try:
                shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
            except (OSError, ValueError, KeyError, TypeError):
                return False
            return all((folder / shard).is_file() for shard in shards)
    return any(folder.glob("*.safetensors")) or (folder / "pytorch_model.bin").is_file()


# the plan ------------------------------------------------------------------------------------
def plan(name: HubName, *, weights: bool = True) -> Download:
    """The files `name` needs (weights or only config and tokenizer) with their sizes, from
    the hub's tree listing. Raises the one-line errors of `_hub_errors`."""
    refuse_offline(name)
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint())
    with _hub_errors(name):
        info = api.repo_info(name.repo_id, revision=name.revision)
        commit = str(info.sha)
        tree = [item for item in api.list_repo_tree(name.repo_id, revision=commit,
                                                    recursive=True)
                if getattr(item, "size", None) is not None and hasattr(item, "lfs")]
        gated = bool(getattr(info, "gated", False))
        if gated:  # the listing is public; the files are not: ask for one before anything
            _check_access(name, commit)
    sizes = {item.path: int(item.size) for item in tree}
    files = _needed(name, sizes, weights=weights)
    snapshot = repo_folder(name) / "snapshots" / commit
    missing = tuple(item for item in files if not _complete(snapshot / item.path, item.size))
    return Download(name, commit, files, missing, repo_folder(name), gated=gated)


def _check_access(name: HubName, commit: str) -> None:
    """A HEAD of the gated repo's config.json: GatedRepoError when this token (or none) may
    not read its files."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    get_hf_file_metadata(hf_hub_url(name.repo_id, "config.json", revision=commit,
                                    endpoint=endpoint()))


def _needed(name: HubName, sizes: dict[str, int], *, weights: bool) -> tuple[FileSize, ...]:
    if name.gguf:
        return (FileSize(*_gguf_file(name, sizes)),)
    patterns = list(CONFIG_FILES)
    if weights:
        has_safetensors = any(fnmatch.fnmatch(path, "*.safetensors") for path in sizes)
        patterns += WEIGHT_FILES if has_safetensors else LEGACY_WEIGHT_FILES
    chosen = tuple(FileSize(path, size) for path, size in sorted(sizes.items())
                   if "/" not in path and any(fnmatch.fnmatch(path, p) for p in patterns))
    if "config.json" not in {item.path for item in chosen}:
        raise UsageError(f"model {name}: the repo has no config.json, so it is not a "
                         "transformers model", fix="name a transformers model repo, or a GGUF "
                                                   "repo with its quantization: ORG/REPO:Q4_K_M")
    if weights and not any(item.path.endswith((".safetensors", ".bin")) for item in chosen):
        raise UsageError(f"model {name}: the repo has no safetensors or pytorch weights",
                         fix="name a repo that holds weights (a GGUF repo takes :QUANT)")
    return chosen


def _gguf_file(name: HubName, sizes: dict[str, int]) -> tuple[str, int]:
    found = sorted(path for path in sizes if path.endswith(".gguf")
                   and _gguf_matches(path.rsplit("/", 1)[-1], name.gguf))
    if len(found) == 1:
        return found[0], sizes[found[0]]
    every = sorted(path for path in sizes if path.endswith(".gguf"))
    shown = ", ".join(every[:8]) + (" ..." if len(every) > 8 else "") or "none"
    why = "matches several files" if found else "matches no file"
    raise UsageError(f"model {name}: {name.gguf!r} {why} in the repo (GGUF files: {shown})",
                     fix="name one file or a quantization, e.g. ORG/REPO-GGUF:Q4_K_M")


def _gguf_matches(filename: str, wanted: str | None) -> bool:
    if not wanted or not filename.endswith(".gguf"):
        return False
    if filename == wanted:
        return True
    stem = filename[:-len(".gguf")].lower()
    quant = wanted.lower().removesuffix(".gguf")
    # llama.cpp names its files MODEL-Q4_K_M.gguf or MODEL.Q4_K_M.gguf
    return stem.endswith(("-" + quant, "." + quant, "_" + quant))


def _complete(path: Path, size: int) -> bool:
    try:
        return path.stat().st_size == size
    except OSError:
        return False


# fetching -----------------------------------------------------------------------------------
def ensure(name: HubName, *, weights: bool = True, consent: Consent | None = None) -> Path:
    """The model's folder (or GGUF file) in the cache, fetched first if needed: the cached
    copy without a request; offline, a refusal; else the plan goes to `consent` (the face's,
    `consenting`'s, or `without_question`), the disk is checked and the files are fetched."""
    found = cached(name) if weights else cached_config_folder(name)
    if found is not None:
        return found
    download = plan(name, weights=weights)
    if download.missing:
        check_disk(download)
        (consent or _CONSENT.get())(download)
    return fetch(download)


def fetch(download: Download) -> Path:
    """Download the plan's files with huggingface_hub (resuming any .incomplete part) and
    return the model's folder, or its GGUF file."""
    from huggingface_hub import snapshot_download

    name = download.name
    with _hub_errors(name):
        folder = Path(snapshot_download(
            name.repo_id, revision=name.revision,
            allow_patterns=[item.path for item in download.files], **_kwargs()))
    if name.gguf:
        return folder / download.files[0].path
    return folder


def check_disk(download: Download) -> None:
    """Refuse before the first byte when the cache's disk cannot hold the download."""
    root = download.where
    probe = next((p for p in (root, *root.parents) if p.exists()), Path("/"))
    free = shutil.disk_usage(probe).free
    if download.download_bytes > free:
        raise UsageError(f"model {download.name}: {gigabytes(download.download_bytes)} to "
                         f"download and {gigabytes(free)} free on the disk of {probe}; "
                         "nothing was downloaded",
                         fix="free some space, or point HF_HOME (or HF_HUB_CACHE) at a "
                             "bigger disk")


def refuse_offline(name: HubName) -> None:
    if offline():
        raise UsageError(f"model {name}: not in the local Hugging Face cache, and downloads "
                         "are off (HF_HUB_OFFLINE=1 or --offline)", fix=OFFLINE_FIX)


def download_config(name: HubName) -> Path:
    """The model's config.json alone (a few KB): the cached one, else fetched. What the dry
    run and `models show` read before any weights."""
    folder = cached_config_folder(name)
    if folder is not None:
        return folder / "config.json"
    refuse_offline(name)
    from huggingface_hub import hf_hub_download

    with _hub_errors(name):
        return Path(hf_hub_download(name.repo_id, "config.json", revision=name.revision,
                                    **_kwargs()))


@contextlib.contextmanager
def _hub_errors(name: HubName) -> Iterator[None]:
    """huggingface_hub's errors as tunelab's one-line ones (never the token)."""
    import httpx2  # huggingface_hub's HTTP client
    from huggingface_hub import errors

    page = f"{endpoint() or 'https://huggingface.co'}/{name.repo_id}"
    try:
        yield
    except errors.GatedRepoError:
        told = "HF_TOKEN is set but its account has no access" if _token_set() \
            else "no HF_TOKEN is set"
        raise AuthError(f"model {name} is gated: {told}", code="gated_repo",
                        fix=f"accept its licence on {page} (logged in), then set HF_TOKEN to "
                            "a token of that account (huggingface.co/settings/tokens)") from None
    except errors.RevisionNotFoundError:
        raise NotFoundError(f"model {name}: no revision {name.revision!r} on the hub",
                            fix=f"check the name on {page}") from None
    except errors.RepositoryNotFoundError:
        private = "" if _token_set() else " (a private repo needs HF_TOKEN)"
        raise NotFoundError(f"model {name}: no such model on the hub{private}",
                            fix=f"check the spelling (ORG/NAME, as on {page})") from None
    except errors.OfflineModeIsEnabled:
        raise UsageError(f"model {name}: not in the local Hugging Face cache, and downloads "
                         "are off (HF_HUB_OFFLINE=1)", fix=OFFLINE_FIX) from None
    except errors.HfHubHTTPError as error:
        status = getattr(getattr(error, "response", None), "status_code", None)
        raise TransientProviderError(f"model {name}: the hub answered HTTP {status}",
                                     code=str(status), fix="try again in a while") from None
    except (OSError, httpx2.HTTPError) as error:  # the connection, or a file that broke
        if getattr(error, "errno", None) == errno.ENOSPC:
            raise UsageError(f"model {name}: the disk filled up during the download",
                             fix="free some space and run the command again: it resumes "
                                 "where it stopped") from None
        raise TransientProviderError(
            f"model {name}: could not download it ({type(error).__name__})",
            code="network", fix="check the network and run the command again: a download "
                                "resumes where it stopped") from None


def _token_set() -> bool:
    from huggingface_hub import get_token

    return bool(get_token())
