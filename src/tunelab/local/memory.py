"""Keep freed memory in the process, so a training step does not page-fault its buffers in.

A step allocates and frees the same few hundred activation buffers (1 to 30 MB each) every
time. glibc's defaults hand such memory back to the kernel (buffers over its mmap threshold
are unmapped when freed; the heap's top is trimmed), so the next step gets fresh pages and
the kernel zeroes each one on first touch. Measured on the default model (batch 4 x 512, 2
cores): 144k to 230k page faults and 1.6 to 2.5 s of system time per step. With the limits
below, 0 faults and 0.15 s after the first step, and the step 20% shorter.

What changes is that the process holds on to that memory between steps instead of
returning it and faulting it back in; `release_freed_memory` hands it back when a run ends.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from functools import cache

# mallopt parameters, from glibc's malloc.h.
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 << 20  # glibc's ceiling on 64-bit: bigger buffers are always mapped
_applied = False


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process (once); False where not glibc."""
    global _applied
    if _applied:
        return True
    libc = _glibc()
    if libc is None:
        return False
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _applied = all(mallopt(param, value) == 1 for param, value in (
        (M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX),
        (M_TRIM_THRESHOLD, 1 << 30),
        (M_TOP_PAD, 64 << 20),
    ))
    return _applied


def release_freed_memory() -> None:
    """Hand the freed heap back to the kernel after a run, so that a long-lived process (the
    server's worker, a notebook) does not keep a finished run's peak."""
    libc = _glibc()
    if libc is not None and _applied:
        libc.malloc_trim(0)


@cache
def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018 - musl and others lack them
    except (OSError, AttributeError):
        return None
    return libc
