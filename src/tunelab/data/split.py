"""`data split`: a deterministic train/validation split written as two OpenAI JSONL files.

Two streaming passes: the first counts (and checks) the examples, a seeded sample picks
the validation indices, the second writes each example to its side. The same file, --val
and --seed always give the same split; file order is kept on both sides. A file of
preference pairs (OpenAI's DPO rows) splits the same way, pair by pair.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from pathlib import Path

from tunelab.data.atomic_write import atomic_text, refuse_existing
from tunelab.data.convert import read_openai
from tunelab.errors import DataError, UsageError


def split_paths(source: Path, out_dir: Path | None) -> tuple[Path, Path]:
    folder = out_dir if out_dir is not None else source.parent
    return folder / f"{source.stem}_train.jsonl", folder / f"{source.stem}_val.jsonl"


def validation_size(total: int, fraction: float) -> int:
    """At least one validation and one training example whenever there are two or more."""
    if total < 2:
        return 0
    return min(total - 1, max(1, round(total * fraction)))


def split(source: str | Path, *, val: float = 0.1, seed: int = 0,
          out_dir: str | Path | None = None, force: bool = False) -> dict:
    """Write SOURCE_train.jsonl and SOURCE_val.jsonl; returns the paths and the counts."""
    if not 0 < val < 1:
        raise UsageError(f"--val {val} is not a fraction", fix="use a value between 0 and 1, "
                         "e.g. --val 0.1")
    source = Path(source)
    train_path, val_path = split_paths(source, Path(out_dir) if out_dir else None)
    for path in (train_path, val_path):
        refuse_existing(path, force)
    total = sum(1 for _ in _rows(source))  # also raises on the first bad example
    if total < 2:
        raise DataError(f"{source} has {total} example(s); a split needs at least 2",
                        fix="add examples")
    chosen = set(random.Random(seed).sample(range(total), validation_size(total, val)))
    with atomic_text(train_path, force) as train, atomic_text(val_path, force) as held_out:
        for index, example in enumerate(_rows(source)):
            side = held_out if index in chosen else train
            side.write(json.dumps(example, ensure_ascii=False) + "\n")
    return {"examples": total, "train": total - len(chosen), "val": len(chosen),
            "train_file": str(train_path), "val_file": str(val_path), "seed": seed}


def _rows(source: Path) -> Iterable[dict]:
    """The file's checked rows: chat examples (streamed), or preference pairs."""
    from tunelab.data.preference import file_format, read_pairs

    if file_format(source) == "preference":
        return (pair.as_row() for pair in read_pairs(source))
    return (example for _, example in read_openai(source)[1])
