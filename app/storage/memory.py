"""Keep the C heap from churning and from piling up part buffers.

glibc serves large allocations with mmap, but raises that threshold each time such a block
is freed (up to 32 MiB), after which 10 MiB part buffers come from the heap, where freed
memory fragments and RSS creeps up with every part. Fixing the threshold at 1 MiB keeps part
buffers in mmap: growing one is a cheap mremap, and freeing it returns the memory at once.

Fixing it also fixes the trim threshold, at glibc's 128 KiB: the heap's top would then be
given back to the kernel each time a received chunk (up to 256 KiB, a `bytes` per read) is
freed, and taken again, page fault by page fault, for the next one; that was a fifth of the
event loop's CPU. A few MiB of free heap are kept instead.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 1024 * 1024
TRIM_THRESHOLD_BYTES = 4 * 1024 * 1024


def pin_malloc_thresholds() -> bool:
    """Apply the fixed thresholds on glibc; return whether they were applied."""
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
    mmap = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    trim = mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    return bool(mmap and trim)
