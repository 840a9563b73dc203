"""Part buffers: the bytes of one part as they arrive, a pool that reuses their memory, and
the memory budget each upload's buffers reserve before they fill (app/storage/budget.py)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import io
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

from app import metrics
from app.storage.budget import MemoryBudget
from app.storage.sendpath import PartBody

Buffer = bytes | bytearray | memoryview


class BufferPool:
    """Part buffers kept after use, so the next part reuses their memory.

    A fresh buffer costs a page fault for every 4 KiB written into it (and the kernel zeroes
    each page first); at 10 MiB parts that was a third of the service's CPU time. Only
    buffers whose part was stored are kept (a cancelled request's HTTP client may still be
    reading its buffer), and only a few, no larger than a part: idle memory stays small.

    Kept buffers count as idle memory in the budget, so the budget still bounds all part
    memory; they are dropped (`drain`) as soon as an upload would have to wait for memory.
    """

    def __init__(self, keep: int, max_size: int, budget: MemoryBudget | None = None) -> None:
        self.keep = keep
        self.max_size = max_size
        self._budget = budget
        self._spare: list[tuple[io.BytesIO, int]] = []

    def take(self) -> io.BytesIO:
        if not self._spare:
            return io.BytesIO()
        buffer, held = self._spare.pop()
        if self._budget is not None:
            self._budget.release_idle(held)  # the taker has reserved its own
        return buffer

    def give(self, buffer: io.BytesIO, size: int) -> None:
        if len(self._spare) >= self.keep or size > self.max_size or _viewed(buffer):
            return
        budget = self._budget
        if budget is not None and not budget.keep_idle(size):
            return  # memory is short: let it go
        buffer.seek(0)  # overwritten from the start; body() cuts it to the new size
        self._spare.append((buffer, size))

    def drain(self) -> None:
        """Drop every kept buffer and give its memory back to the budget."""
        spare, self._spare = self._spare, []
        if self._budget is not None:
            for _, held in spare:
                self._budget.release_idle(held)


def _viewed(buffer: io.BytesIO) -> bool:
    """Whether a view of the buffer's memory is still alive somewhere (a transport that has
    not let go of a failed request's bytes): such memory must not be written again."""
    try:
        buffer.truncate(buffer.seek(0, io.SEEK_END))  # no change; refused while viewed
    except BufferError:
        return True
    return False


class PartBuffer:
    """The bytes of one part as they arrive.

    Kept in an io.BytesIO, which grows in place as bytes are appended (no copy per part) and
    lends its memory to views: the HTTP client sends the part from it (`sending`), and
    worker threads read it (`read_in_thread`), without copying it.

    `reserved` is what the buffer holds of the memory budget: it is reserved before bytes are
    appended (never more than that is appended) and given back by `release()`.

    Worker threads read the bytes in place (`read_in_thread`: the object's SHA-256; `digest`:
    the part's MD5 or CRC32C) while the event loop sends them. A release asked for while a
    thread still reads waits for the last one: until then the memory stays counted in the
    budget and the buffer cannot be pooled, so no thread reads bytes that a later part
    overwrites.
    """

    __slots__ = (
        "_budget",
        "_bytes",
        "_pool",
        "_readers",
        "_release_asked",
        "_sealed",
        "_taken",
        "reserved",
        "size",
    )

    def __init__(self, budget: MemoryBudget | None = None, pool: BufferPool | None = None) -> None:
        self._budget = budget
        self._pool = pool
        self._bytes = io.BytesIO()
        self._taken = False  # a pooled buffer is taken at the first byte, not before
        self._sealed = False  # cut to `size`: no more bytes, threads may view them
        self._readers = 0  # worker threads reading the bytes right now
        self._release_asked: bool | None = None  # release(reuse=...) waiting for readers
        self.size = 0
        self.reserved = 0

    def append(self, data: Buffer) -> None:
        if self._sealed:
            raise RuntimeError("append() to a part whose bytes are final")
        if not self._taken:
            # A pooled buffer may hold an earlier part's bytes past `size`: they are
            # overwritten as this part fills, and cut off by seal().
            self._taken = True
            if self._pool is not None:
                self._bytes = self._pool.take()
        self.size += self._bytes.write(data)

    def seal(self) -> None:
        """The part's bytes are final: cut the buffer to them (idempotent).

        Done before any thread views the bytes: a BytesIO cannot be resized while viewed.
        """
        if not self._sealed:
            self._sealed = True
            self._bytes.truncate(self.size)

    @contextlib.contextmanager
    def sending(self) -> Iterator[PartBody]:
        """The part as a request body over its own memory (app/storage/sendpath.py), for
        the duration of the block: the view it holds is released at its end."""
        self.seal()
        body = PartBody(self._bytes.getbuffer())
        try:
            yield body
        finally:
            body.close()

    def trim(self) -> None:
        """Give back the reserved memory this buffer will not fill (its object has ended)."""
        if self._budget is not None and self.reserved > self.size:
            self._budget.release(self.reserved - self.size)
        self.reserved = min(self.reserved, self.size)

    def read_in_thread(self, work: Callable[[memoryview], T]) -> asyncio.Future[T]:
        """Run `work` over the part's bytes in a worker thread (READERS); its result.

        hashlib and awscrt release the GIL on large buffers, so the event loop goes on receiving and
        sending on the other core. The buffer counts the thread as a reader until the thread
        itself has ended, whatever becomes of the returned future (a cancelled caller).
        """
        self.seal()
        loop = asyncio.get_running_loop()
        view = self._bytes.getbuffer()
        self._readers += 1
        try:
            job = READERS.submit(_read, view, work)
        except BaseException:
            view.release()
            self._readers -= 1
            raise
        # Added before wrap_future adds its own: the buffer hears that the thread has ended
        # before whoever awaits the returned future does.
        job.add_done_callback(lambda _: _call_soon(loop, self._reader_done))
        return asyncio.wrap_future(job, loop=loop)

    async def digest(self, work: Callable[[memoryview], T]) -> T:
        """`work` (a digest: the part's MD5 or CRC32C) over the bytes, in a worker thread.

        A cancelled caller returns only once the thread has ended, so a part stopped by an
        abort leaves no thread reading its buffer.
        """
        job = self.read_in_thread(work)
        try:
            return await asyncio.shield(job)
        except asyncio.CancelledError:
            await asyncio.wait({job})
            raise

    def release(self, *, reuse: bool = False) -> None:
        """Drop the bytes and give their memory back to the budget (idempotent), once no
        thread reads them any more.

        `reuse`: the part was stored, nothing else reads the buffer: it may be pooled.
        """
        if self._readers:
            if self._release_asked is None:
                self._release_asked = reuse  # done by the last reader
            return
        buffer, self._bytes = self._bytes, io.BytesIO()
        if self._budget is not None and self.reserved:
            self._budget.release(self.reserved)
        self.reserved = 0
        if reuse and self._pool is not None:
            self._pool.give(buffer, self.size)  # after the release, which made room for it

    def _reader_done(self) -> None:
        self._readers -= 1
        if not self._readers and self._release_asked is not None:
            self.release(reuse=self._release_asked)


T = TypeVar("T")

#: The worker threads that read part buffers, shared by every upload of the process.
READERS = concurrent.futures.ThreadPoolExecutor(thread_name_prefix="part-reader")


def _read(view: memoryview, work: Callable[[memoryview], T]) -> T:
    with view:  # the BytesIO may be resized or pooled again only once this view is gone
        return work(view)


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    """`callback` on the loop's thread, from a worker thread."""
    with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is left to tell
        loop.call_soon_threadsafe(callback)


class ObjectBuffers:
    """One object's part buffers: the one filling, full ones held back, and the memory budget
    they reserve.

    Bytes go only into memory reserved for them, reserved a part at a time (less when the
    size hint says less can still come). Without a budget (unit tests, scripts) every
    reservation is granted at once.

    `part_sizes(n)` is the size of part n (from 1); by default every part is `part_size`.
    """

    def __init__(
        self,
        budget: MemoryBudget | None,
        pool: BufferPool,
        *,
        part_size: int,
        first_size: int,
        size_hint: int | None = None,
        on_wait: Callable[[], Awaitable[None]] | None = None,
        part_sizes: Callable[[int], int] | None = None,
    ) -> None:
        self._budget = budget
        self._pool = pool
        self._part_sizes = part_sizes or (lambda number: part_size)
        self._part_size = self._part_sizes(1)  # of the part filling now
        self._size_hint = size_hint  # an upper bound on the object's size, if known
        # Runs before a reservation waits for memory: the caller may free what it holds.
        self._on_wait = on_wait
        self.current = self._new()
        # Full buffers not sent yet (the single-put buffer, once it turns multipart).
        self.held: list[PartBuffer] = []
        # How far the current buffer fills: the first may hold a whole object for one
        # PutObject (so the put needs no joining copy), every later one a part.
        self.fill_to = first_size
        self.part_number = 1  # of the buffer filling now: each buffer becomes one part
        self.buffered = 0  # bytes of the object appended so far

    @property
    def held_bytes(self) -> int:
        """Bytes in buffers right now (held and filling)."""
        return sum(b.size for b in self.held) + self.current.size

    def fill(self, view: memoryview) -> memoryview:
        """Append what the current buffer has reserved room for; return the rest."""
        current = self.current
        room = current.reserved - current.size
        current.append(view[:room])
        self.buffered += min(room, len(view))
        return view[room:]

    def try_grow(self) -> bool:
        """Reserve more for the current buffer if the budget has it now (dropping idle
        pooled buffers if that makes room); False if it would have to wait."""
        size = self._grain()
        budget = self._budget
        if budget is not None and not budget.try_acquire(size):
            self._pool.drain()
            if not budget.try_acquire(size):
                return False
        self.current.reserved += size
        return True

    async def grow(self) -> None:
        """Reserve more for the current buffer, waiting for memory if the budget is spent."""
        if self.try_grow():
            return
        current, size = self.current, self._grain()
        budget = self._budget
        if budget is not None:
            metrics.BUDGET_WAITS.inc()
            if self._on_wait is not None:
                await self._on_wait()
            await budget.acquire(size)
        current.reserved += size

    def hold_current(self) -> None:
        """The current buffer is full: hold it back, and fill a new one of the next part's
        size."""
        self.held.append(self.current)
        self.current = self._new()
        self.part_number += 1
        self._part_size = self.fill_to = self._part_sizes(self.part_number)

    def hold_last(self) -> None:
        """The object has ended: hold back what the current buffer has, if anything."""
        if self.current.size:
            self.held.append(self.current)
            self.current = self._new()

    def release(self, *, reuse: bool = False) -> None:
        """Drop every buffer (see PartBuffer.release); later bytes fill a new one."""
        for buffer in [*self.held, self.current]:
            buffer.release(reuse=reuse)
        self.held, self.current = [], self._new()

    def _new(self) -> PartBuffer:
        return PartBuffer(self._budget, self._pool)

    def _grain(self) -> int:
        """How much the current buffer reserves next: up to a part, no more than can come."""
        want = min(self.fill_to - self.current.size, self._part_size)
        if self._size_hint is not None and self._size_hint > self.buffered:
            want = min(want, self._size_hint - self.buffered)
        return max(want, 1)
