"""Part scheduling: parts go out concurrently, at most a set number at once.

A part takes an upload slot before `submit()` returns, so while every slot is busy the caller
waits, and with it the reading of the request body: that is the backpressure. The first
failure of any part is kept; no part is started after it, and `wait()` raises it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from app import metrics
from app.errors import StorageFailed
from app.storage.buffers import PartBuffer
from app.storage.failures import describe

#: Sends one part: its number (from 1, in submission order) and its bytes.
SendPart = Callable[[int, PartBuffer], Awaitable[None]]


class PartScheduler:
    """Runs `send` for each part submitted, with at most `slots` running at once."""

    def __init__(self, slots: int, send: SendPart, *, first_number: int = 1) -> None:
        """`first_number`: the number of the first part submitted (a resumed upload's next)."""
        self._slots = asyncio.Semaphore(slots)
        self._send = send
        self._tasks: set[asyncio.Task[None]] = set()
        self._next_number = first_number
        self.failure: BaseException | None = None  # the first part that failed, if any

    async def submit(self, body: PartBuffer) -> None:
        """Start sending `body` as the next part once a slot is free.

        The part's buffer is released once it is sent, or at once if it will not be (a
        failure before it, or the caller cancelled while waiting for a slot).
        """
        acquired = False
        try:
            await self._slots.acquire()
            acquired = True
            self.raise_if_failed()
        except BaseException:
            body.release()  # the part will not be sent: its memory is free again
            if acquired:
                self._slots.release()
            raise
        number = self._next_number
        self._next_number += 1
        task = asyncio.ensure_future(self._run(number, body))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    async def wait(self) -> None:
        """Wait until every part submitted has ended; raise the first failure."""
        if self._tasks:
            await asyncio.wait(set(self._tasks))
        self.raise_if_failed()

    async def cancel(self) -> None:
        """Stop every part still running, and wait until they have ended."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks))

    def raise_if_failed(self) -> None:
        if self.failure is not None:
            if isinstance(self.failure, StorageFailed):
                raise self.failure
            raise StorageFailed(f"part upload failed: {describe(self.failure)}")

    async def _run(self, number: int, body: PartBuffer) -> None:
        metrics.PARTS_IN_FLIGHT.inc()
        try:
            await self._send(number, body)
        finally:
            metrics.PARTS_IN_FLIGHT.dec()
            body.release()
            self._slots.release()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and self.failure is None:
            self.failure = task.exception()
