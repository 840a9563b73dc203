"""The SHA-256 of a whole object, computed in worker threads as its parts fill.

Hashing on the event loop's thread would bind every upload of a worker to one core; hashlib
releases the GIL on buffers over 2 KiB, so each full part buffer is hashed in a worker thread
(`PartBuffer.read_in_thread`) while the loop receives the next one. One object's parts are
hashed one at a time and in order, as a digest must be; `add()` waits for the previous part's
job, so the hash is at most one part behind the bytes received and holds no buffer the upload
would not hold anyway.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from typing import Protocol

from app.storage.buffers import PartBuffer


class Hasher(Protocol):
    """What ObjectHash needs of a hashlib object."""

    def update(self, data: memoryview, /) -> None: ...
    def hexdigest(self) -> str: ...


class ObjectHash:
    """SHA-256 of an object's part buffers, fed in order, finished by `digest()`."""

    def __init__(self, new: Callable[[], Hasher] = hashlib.sha256) -> None:
        self._hash = new()
        self._job: asyncio.Future[None] | None = None  # the part being hashed, if any
        self._hexdigest: str | None = None
        self._stopped = False

    async def add(self, part: PartBuffer) -> None:
        """Hash `part` (its bytes are final) after the parts added before it.

        Returns once the job has started: it waits only while the previous part is still
        being hashed, and raises if that one failed.
        """
        if self._hexdigest is not None or self._stopped:
            raise RuntimeError("add() to a hash that is finished or stopped")
        await self._wait()
        if self._stopped:  # stopped while we waited
            raise RuntimeError("add() to a hash that is stopped")
        if self._job is not None:
            self._job.result()
        if part.size:
            self._job = part.read_in_thread(self._hash.update)

    async def digest(self) -> str:
        """The hex digest of every part added, once the last job has ended (idempotent)."""
        if self._hexdigest is None:
            await self._wait()
            if self._job is not None:
                self._job.result()  # a hasher that failed fails the upload
            self._hexdigest = self._hash.hexdigest()
        return self._hexdigest

    async def stop(self) -> None:
        """No more parts: wait until no thread is hashing (the upload is being aborted)."""
        self._stopped = True
        await self._wait()
        if self._job is not None:
            self._job.exception()  # retrieved: an aborted upload has no use for it

    async def _wait(self) -> None:
        # asyncio.wait, not await: a cancelled caller must not cancel the job's future, which
        # is the only sign that the thread has ended.
        if self._job is not None and not self._job.done():
            await asyncio.wait({self._job})
