"""DPO's reference log-probabilities: computed once, kept on disk, reused.

The reference model does not train, so its (preferred, non-preferred) log-probabilities of
each pair are fixed numbers. They are computed in one pass before the first step and kept
in TUNELAB_HOME/cache/reference_logps/KEY.json, where KEY hashes

    the pairs' token ids and labels (the data, encoded), the reference weights (the base
    model's files, the --from job's adapter files) and the length setting (max_length),

so a second run, a resume and every trial of a sweep read them back, and a change to any
of these computes them again. The pass runs on the model training holds, put into the
reference state (`reference_state`): no second model in memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tunelab import home
from tunelab.config import TrainConfig
from tunelab.local.encoding import EncodedSet
from tunelab.local.pair_scores import pair_scores

VERSION = 1  # of the key's recipe and the file's layout
# A weights file bigger than this is fingerprinted by its size and its first and last MiB
# (a safetensors file's first MiB is its header: every tensor's name, dtype, shape and
# offset): hashing gigabytes would cost more than the pass it saves.
WHOLE_HASH_BYTES = 64 << 20
EDGE_BYTES = 1 << 20
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt")


def fill_reference(scorer: Any, sets: list[EncodedSet], *, config: TrainConfig, pad_id: int,
                   fresh: bool) -> str:
    """Set `reference` on every pair of `sets`, from the cache or computed now with the
    model `scorer` holds in its reference state; the line for the run's log."""
    identity = reference_identity(config)
    missing = []
    for encoded in sets:
        key = cache_key(encoded, identity, config.max_length)
        scores = read_cached(key, len(encoded.items))
        if scores is None:
            missing.append((encoded, key))
        else:
            attach(encoded, scores)
    pairs = sum(len(encoded.items) for encoded in sets)
    if not missing:
        return f"reference log-probs: cached ({pairs} pairs)"
    began = time.perf_counter()
    with reference_state(scorer, config, fresh=fresh) as reference:
        for encoded, key in missing:
            scores = pair_scores(reference, encoded.items, pad_id)
            write_cached(key, scores)
            attach(encoded, scores)
    computed = sum(len(encoded.items) for encoded, _ in missing)
    cached = f", {pairs - computed} cached" if pairs > computed else ""
    return (f"reference log-probs: computed in {time.perf_counter() - began:.1f} s "
            f"({computed} pairs{cached})")


def attach(encoded: EncodedSet, scores: list[tuple[float, float]]) -> None:
    for pair, score in zip(encoded.items, scores, strict=True):
        pair.reference = (float(score[0]), float(score[1]))


@contextlib.contextmanager
def reference_state(scorer: Any, config: TrainConfig, *, fresh: bool) -> Iterator[Any]:
    """A scorer on the reference model: the model training starts from.

    LoRA from the base: the adapter switched off (peft's disable_adapter). Otherwise, while
    no step has run (`fresh`), the model as it is (the --from job's adapter, or every
    weight of a --full run, before training). A resumed LoRA run from a job loads that
    job's adapter beside its own as a second, frozen one; a resumed --full run loads its
    starting model again for the pass (on a cache miss only: the cache is the usual way).
    """
    from tunelab.local.start import start_adapter

    model = scorer.model
    adapter = start_adapter(config)
    if not config.full and adapter is None:
        with model.disable_adapter():
            yield scorer
    elif fresh:
        yield scorer
    elif adapter is not None and not config.full:
        model.load_adapter(str(adapter), adapter_name="reference")
        model.set_adapter("reference")
        try:
            yield scorer
        finally:
            model.set_adapter("default")  # also makes "default" trainable again
            model.delete_adapter("reference")
    else:
        from tunelab.local.start import start_model
        from tunelab.local.validation import loss_for

        yield loss_for(start_model(config))


def reference_identity(config: TrainConfig) -> dict[str, Any]:
    """What names the reference weights: the base model's files and the --from adapter's."""
    from tunelab.local.model_source import locate
    from tunelab.local.start import start_adapter

    adapter = start_adapter(config)
    return {"model": fingerprint(locate(config.model)),
            "adapter": fingerprint(adapter) if adapter is not None else None}


def fingerprint(location: Path) -> list[tuple[str, int, str]]:
    """(name, size, digest) of the weight files at `location` (a file or a folder)."""
    files = [location] if location.is_file() else sorted(
        path for path in location.iterdir() if path.suffix in WEIGHT_SUFFIXES)
    return [(path.name, path.stat().st_size, _digest(path)) for path in files]


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    size = path.stat().st_size
    with path.open("rb") as handle:
        if size <= WHOLE_HASH_BYTES:
            for block in iter(lambda: handle.read(EDGE_BYTES), b""):
                digest.update(block)
        else:
            digest.update(handle.read(EDGE_BYTES))
            handle.seek(size - EDGE_BYTES)
            digest.update(handle.read(EDGE_BYTES))
    return digest.hexdigest()


def cache_key(encoded: EncodedSet, identity: dict[str, Any], max_length: int) -> str:
    digest = hashlib.sha256(json.dumps([VERSION, identity, max_length]).encode())
    for pair in encoded.items:
        for sequence in (pair.preferred, pair.non_preferred):
            digest.update(json.dumps([sequence.input_ids, sequence.labels]).encode())
    return digest.hexdigest()


def cache_folder() -> Path:
    return home.folder(home.home() / "cache" / "reference_logps")


def read_cached(key: str, pairs: int) -> list[tuple[float, float]] | None:
    """The kept scores of `key`, or None (never kept, unreadable, or not `pairs` of them)."""
    try:
        saved = json.loads((cache_folder() / f"{key}.json").read_text(encoding="utf-8"))
        scores = [(float(preferred), float(other)) for preferred, other in saved["scores"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return scores if len(scores) == pairs else None


def write_cached(key: str, scores: list[tuple[float, float]]) -> None:
    """Atomically: a run killed while writing leaves no half file to read back."""
    folder = cache_folder()
    handle, temp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump({"version": VERSION, "pairs": len(scores), "scores": scores}, file)
        os.replace(temp, folder / f"{key}.json")
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
