"""Keep glibc's heap from growing on long streams of large, short-lived buffers.

A video run allocates and frees the same sizes over and over: 602 KB crops, 4.8 MB batches
of 8 crops, frames. glibc's malloc raises its mmap threshold each time a large mmapped
block is freed (up to 32 MB), after which such buffers come from the heap, whose freed
pieces are not given back to the system. Measured here (``benchmarks/memory_video.py``'s
stand-in path, 2,000 frames): RSS grew from 780 to 1,390 MB with the default and stayed at
760 MB with a fixed threshold; a 15,000-frame run passed 3.6 GB. Setting the threshold
explicitly (what ``MALLOC_MMAP_THRESHOLD_`` does) turns the dynamic adjustment off, so
large buffers are always mmapped and returned on free.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["fix_mmap_threshold"]

M_MMAP_THRESHOLD = -3
_done = {"value": None}


def fix_mmap_threshold(threshold: int = 128 * 1024) -> bool:
    """Fix glibc's mmap threshold (bytes) for this process; False where not glibc."""
    if _done["value"] is not None:
        return bool(_done["value"])
    ok = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            ok = bool(libc.mallopt(M_MMAP_THRESHOLD, int(threshold)))
        except (OSError, AttributeError):  # musl and others have no mallopt
            ok = False
    _done["value"] = ok
    return ok
