"""Deterministic pseudo-random file contents for load tests, made chunk by chunk.

Generating fresh random bytes costs about as much CPU as the service spends storing them
(random.randbytes runs at a few hundred MiB/s), and on a small machine the load generator
shares the cores with the server. So each chunk is instead a slice, at a seeded pseudo-random
offset, of one random pool made once per process, headed by the file's seed and the chunk's
index: the bytes do not compress, every chunk of every file differs (a mixed-up or reordered
upload changes the digest), the same seed gives the same file, and memory stays constant.
"""

from __future__ import annotations

import functools
import random
import struct
from collections.abc import Iterator

from app.client.formbody import CHUNK_SIZE

_POOL_SIZE = 8 * 1024 * 1024
_HEADER = struct.Struct(">QQ")  # seed, chunk index


@functools.cache
def _pool() -> bytes:
    return random.Random(b"streaming-upload load test pool").randbytes(_POOL_SIZE)


def generated_chunks(seed: int, size: int, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """`size` bytes determined by `seed`, as chunks of `chunk_size` (the last may be shorter)."""
    if not 0 < chunk_size <= _POOL_SIZE // 2:
        raise ValueError(f"chunk_size must be 1 to {_POOL_SIZE // 2} bytes")
    pool = _pool()
    offsets = random.Random(seed)
    index = 0
    left = size
    while left > 0:
        n = min(chunk_size, left)
        head = _HEADER.pack(seed % 2**64, index)
        start = offsets.randrange(_POOL_SIZE - chunk_size)
        yield (head + pool[start + len(head) : start + n])[:n]
        left -= n
        index += 1
