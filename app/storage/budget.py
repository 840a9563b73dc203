"""The process-wide memory budget for part buffers (UPLOAD_MEMORY_BUDGET).

Every buffer that holds file bytes reserves its size here before it is filled and gives it
back once its bytes are stored (or dropped). When the budget is spent, an upload waits before
filling its next buffer, which stops it reading its request body: the client is slowed by TCP
backpressure, no request fails. Waiters are served first come, first served.

Deadlock freedom rests on two rules kept by app/storage/upload.py and app/forms/upload.py:
a buffer reserves its whole size before its first byte (it never waits half-filled), and an
upload about to wait first sends what it holds back for a single PutObject, so every reserved
byte is either on its way to storage (and will be released) or in a buffer being filled by a
client that is sending.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable


class MemoryBudget:
    """Counts reserved bytes against a limit; `acquire` waits, `try_acquire` does not."""

    def __init__(self, limit: int, on_change: Callable[[int], None] | None = None) -> None:
        if limit <= 0:
            raise ValueError("the memory budget must be positive")
        self.limit = limit
        self.used = 0
        self.peak = 0
        #: Bytes of idle buffers kept for reuse (app/storage/buffers.py): not in use, but memory,
        #: so they count against the limit until they are used or dropped.
        self.idle = 0
        self._on_change = on_change  # told the bytes in use after every change (metrics)
        self._waiters: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()

    @property
    def waiting(self) -> int:
        """Uploads waiting for memory right now."""
        return len(self._waiters)

    def _fits(self, size: int) -> bool:
        # A reservation larger than the whole budget (a part planned very large for a huge
        # Content-Length) is granted when nothing else is reserved, so it cannot wait forever.
        return self.used + self.idle + size <= self.limit or self.used + self.idle == 0

    def try_acquire(self, size: int) -> bool:
        """Reserve `size` bytes now if they fit and nobody is queued ahead; else False."""
        if self._waiters or not self._fits(size):
            return False
        self._take(size)
        return True

    async def acquire(self, size: int) -> None:
        """Reserve `size` bytes, waiting behind earlier waiters until they fit."""
        if self.try_acquire(size):
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (size, future)
        self._waiters.append(entry)
        try:
            await future
        except BaseException:
            if future.done() and not future.cancelled():
                # Granted just as we were cancelled: give it back.
                self.release(size)
            else:
                if entry in self._waiters:
                    self._waiters.remove(entry)
                self._wake()
            raise

    def release(self, size: int) -> None:
        """Give back `size` reserved bytes and wake whoever now fits."""
        if size <= 0:
            return
        self.used -= size
        if self.used < 0:  # a double release is a bug; keep the count usable regardless
            self.used = 0
        if self._on_change is not None:
            self._on_change(self.used)
        self._wake()

    def keep_idle(self, size: int) -> bool:
        """Count `size` bytes of an idle buffer, if they fit and nobody waits for memory."""
        if self._waiters or self.used + self.idle + size > self.limit:
            return False
        self.idle += size
        return True

    def release_idle(self, size: int) -> None:
        self.idle = max(self.idle - size, 0)
        self._wake()

    def _take(self, size: int) -> None:
        self.used += size
        self.peak = max(self.peak, self.used)
        if self._on_change is not None:
            self._on_change(self.used)

    def _wake(self) -> None:
        while self._waiters:
            size, future = self._waiters[0]
            if future.done():
                self._waiters.popleft()
                continue
            if not self._fits(size):
                return
            self._waiters.popleft()
            self._take(size)
            future.set_result(None)
