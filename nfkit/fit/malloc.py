"""Keep glibc from returning large blocks to the kernel between steps.

Fitting allocates and frees tensors of tens of MB every step. Under glibc's default malloc
each of them is a fresh ``mmap`` whose pages fault in on first touch, which made batched
fitting page-fault bound on the development machines (SPEC §9). ``mallopt`` (via ctypes, so
it works after the process has started — the ``MALLOC_*`` environment variables only act at
start-up) switches large allocations to the heap and stops trimming it, so freed memory is
reused without new page faults.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

# glibc <malloc.h>
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4

_applied: bool | None = None


def tune_malloc(top_pad_mb: int = 256) -> bool:
    """Apply the settings once per process; returns whether they are in effect (glibc only)."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or another libc
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = all(
        mallopt(param, value)
        for param, value in (
            (M_MMAP_MAX, 0),  # never mmap: big blocks come from the (reused) heap
            (M_TRIM_THRESHOLD, 2**31 - 1),  # never give the heap's top back
            (M_TOP_PAD, top_pad_mb << 20),  # grow the heap in big steps
        )
    )
    _applied = bool(ok)
    log.info("glibc malloc tuned for fitting: %s", _applied)
    return _applied
