"""Check a big .jsonl file on several cores: byte ranges cut at line starts, one per task.

Worker processes are forked, so they share the parent's loaded tokenizer instead of
loading their own (importing the tokenizer tables costs more than checking 10 MB). Each
range comes back as plain Tallies and is stitched on in file order, lines shifted by the
lines before it. Where fork is not available, or the file is small, the caller scans in
its own process.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, Self

from tunelab.data.reader import line_ranges


class Tally(Protocol):
    """What one range's scan returns: joinable, in file order, and counting its examples."""

    examples: int

    def absorb(self, later: Self) -> None: ...


class RangeScanner(Protocol):
    """The work of one range, run in a forked worker (data/check.py's scanner)."""

    def scan_range(self, byte_range: tuple[int, int]) -> Tally: ...


PARALLEL_FROM = 32 << 20  # smaller files are checked faster than processes start
RANGE_BYTES = 4 << 20  # small enough that the last range to finish leaves little idle
MAX_WORKERS = 8
_SCAN: RangeScanner | None = None  # set in the parent just before the fork; read by the workers


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def plan(path: Path, workers: int | None) -> list[tuple[int, int]]:
    """The byte ranges to check in parallel, or [] to check in one process."""
    if path.suffix.lower() != ".jsonl" or "fork" not in multiprocessing.get_all_start_methods():
        return []
    count = min(MAX_WORKERS, usable_cores()) if workers is None else workers
    if count < 2 or (workers is None and path.stat().st_size < PARALLEL_FROM):
        return []
    ranges = line_ranges(path, RANGE_BYTES)
    return ranges if len(ranges) > 1 else []


def scan(ranges: list[tuple[int, int]], scanner: RangeScanner,
         on_progress: Callable[[int], None] | None, workers: int | None = None) -> Tally:
    """Scan every range in a pool of forked workers; their Tallies joined in file order."""
    global _SCAN
    count = min(len(ranges), workers or min(MAX_WORKERS, usable_cores()))
    _SCAN = scanner
    try:
        with multiprocessing.get_context("fork").Pool(count) as pool:
            parts = pool.imap(_scan_range, ranges)
            tallies = next(parts)
            for part in parts:
                if on_progress:
                    on_progress(tallies.examples)
                tallies.absorb(part)
    finally:
        _SCAN = None
    if on_progress:
        on_progress(tallies.examples)
    return tallies


def _scan_range(byte_range: tuple[int, int]) -> Tally:
    assert _SCAN is not None, "parallel.scan sets the scanner before forking"
    return _SCAN.scan_range(byte_range)
