"""Keep part buffers from piling up in the C heap.

glibc serves large allocations with mmap, but raises that threshold each time such a block
is freed (up to 32 MiB), after which 10 MiB part buffers come from the heap, where freed
memory fragments and RSS creeps up with every part. Fixing the threshold at 1 MiB keeps part
buffers in mmap: growing one is a cheap mremap, and freeing it returns the memory at once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 1024 * 1024


def pin_mmap_threshold() -> bool:
    """Apply the fixed threshold on glibc; return whether it was applied."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
