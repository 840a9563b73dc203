"""A request body's chunks, read straight from ASGI `receive`, with an idle timeout.

uvicorn has no read timeout for request bodies, so without one a trickling client would hold
a part buffer and an open multipart upload for as long as it likes. The timeout counts only
time spent waiting for the client: while the upload waits for storage (backpressure), no
chunk is asked for and none is late.

A body arrives in 64 to 256 KiB chunks, thousands per GiB, so what each one costs counts:
the chunks come from `receive` itself, not through Starlette's `Request.stream()` (one
async generator fewer), and one timer per upload is re-armed only when it fires, instead of
an `asyncio.timeout` entered and left for every chunk.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from starlette.requests import ClientDisconnect
from starlette.types import Receive

from app.errors import IdleTimeout


class IdleWatch:
    """Cancels the current task once one wait for the client has lasted `seconds`."""

    def __init__(self, seconds: float) -> None:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("IdleWatch needs a running task")
        self._task = task
        self._loop = asyncio.get_running_loop()
        self._seconds = seconds
        self._cancelling = task.cancelling()  # cancellations asked for before ours
        self._since: float | None = None  # when the current wait began, if waiting
        self._timer: asyncio.TimerHandle | None = None
        self.fired = False

    def waiting(self) -> None:
        self._since = self._loop.time()
        if self._timer is None:
            self._timer = self._loop.call_at(self._since + self._seconds, self._check)

    def done(self) -> None:
        self._since = None

    def expired(self) -> bool:
        """After a CancelledError in a wait: whether it was this watch's own (then it is
        taken back), rather than someone else's (which must go on)."""
        return self.fired and self._task.uncancel() <= self._cancelling

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        self._timer = None
        if self._since is None:
            return  # not waiting: the next wait arms the timer again
        due = self._since + self._seconds
        if self._loop.time() >= due:
            self.fired = True
            self._task.cancel()  # lands in the wait: that is where the task is suspended
        else:
            self._timer = self._loop.call_at(due, self._check)


async def body_chunks(receive: Receive, idle_timeout: float) -> AsyncIterator[bytes]:
    """The body's non-empty chunks, in order; ClientDisconnect if the client goes away,
    IdleTimeout if it sends nothing for `idle_timeout` seconds (0: no timeout)."""
    watch = IdleWatch(idle_timeout) if idle_timeout else None
    try:
        while True:
            if watch is not None:
                watch.waiting()
            try:
                message = await receive()
            except asyncio.CancelledError:
                if watch is not None and watch.expired():
                    raise IdleTimeout(
                        f"no body bytes for {idle_timeout:g} s; upload aborted"
                    ) from None
                raise
            finally:
                if watch is not None:
                    watch.done()
            if message["type"] == "http.disconnect":
                raise ClientDisconnect()
            chunk: bytes = message.get("body", b"")
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return
    finally:
        if watch is not None:
            watch.close()
