"""Part buffers, the pool that reuses them, and one object's buffers against the budget."""

from __future__ import annotations

import asyncio
import hashlib
import io
import threading

import pytest

from app.storage.budget import MemoryBudget
from app.storage.buffers import BufferPool, ObjectBuffers, PartBuffer

pytestmark = pytest.mark.anyio

PART = 1000


def md5(view: memoryview) -> bytes:
    return hashlib.md5(view).digest()


def filled(budget: MemoryBudget | None, pool: BufferPool | None, data: bytes) -> PartBuffer:
    buffer = PartBuffer(budget, pool)
    if budget is not None:
        assert budget.try_acquire(len(data))
    buffer.reserved = len(data)
    buffer.append(data)
    return buffer


# --- PartBuffer and BufferPool ----------------------------------------------------------------


async def test_a_reused_buffer_sends_only_its_own_part() -> None:
    pool = BufferPool(keep=2, max_size=PART)
    first = filled(None, pool, b"a" * 800)
    first.release(reuse=True)
    second = filled(None, pool, b"b" * 300)  # writes over the first part's bytes
    with second.sending() as body:
        assert body.read() == b"b" * 300
    assert await second.digest(md5) == hashlib.md5(b"b" * 300).digest()


async def test_a_cancelled_digest_returns_only_once_its_thread_has_ended() -> None:
    """An abort cancels a part mid-digest: the caller must not come back while a thread still
    reads the buffer (its memory could be pooled and overwritten under the thread)."""
    entered, gate = threading.Event(), threading.Event()
    ended: list[bool] = []

    def slow(view: memoryview) -> int:
        entered.set()
        gate.wait(timeout=30)
        ended.append(True)
        return len(view)

    buffer = filled(None, None, b"x" * 100)
    caller = asyncio.ensure_future(buffer.digest(slow))
    await asyncio.to_thread(entered.wait, 30)
    caller.cancel()
    await asyncio.sleep(0.05)
    assert not caller.done()  # cancelled, but still waiting for the thread
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert ended == [True]
    assert await buffer.digest(len) == 100  # and a digest runs `work` over the part's bytes


def test_memory_still_viewed_is_not_pooled() -> None:
    """A transport may hold a failed request's bytes past the request: never reuse them."""
    pool = BufferPool(keep=2, max_size=PART)
    buffer = filled(None, pool, b"a" * 800)
    memory = buffer._bytes
    with buffer.sending() as body:
        held = body.view(0)  # what a transport still holds after the block
    buffer.release(reuse=True)
    assert pool.take() is not memory
    assert bytes(held) == b"a" * 800
    held.release()
    buffer = filled(None, pool, b"b" * 800)
    memory = buffer._bytes
    buffer.release(reuse=True)
    assert pool.take() is memory


def test_release_gives_the_reservation_back_once() -> None:
    budget = MemoryBudget(1000)
    buffer = filled(budget, None, b"x" * 600)
    buffer.release()
    buffer.release()
    assert budget.used == 0 and buffer.reserved == 0


def test_trim_gives_back_what_the_buffer_will_not_fill() -> None:
    budget = MemoryBudget(1000)
    buffer = PartBuffer(budget)
    assert budget.try_acquire(500)
    buffer.reserved = 500
    buffer.append(b"x" * 120)
    buffer.trim()
    assert (buffer.reserved, budget.used) == (120, 120)


def test_only_stored_parts_are_pooled() -> None:
    pool = BufferPool(keep=4, max_size=PART)
    filled(None, pool, b"x" * 10).release()  # not stored: a client may still read it
    assert pool.take() is not pool.take()  # two fresh buffers: nothing was kept
    kept = filled(None, pool, b"x" * 10)
    kept.release(reuse=True)
    assert len(pool._spare) == 1


def test_the_pool_keeps_a_few_buffers_no_larger_than_a_part() -> None:
    pool = BufferPool(keep=2, max_size=PART)
    pool.give(io.BytesIO(), PART + 1)
    assert pool._spare == []
    for _ in range(3):
        pool.give(io.BytesIO(), PART)
    assert len(pool._spare) == 2


def test_kept_buffers_count_as_idle_memory_until_taken_or_drained() -> None:
    budget = MemoryBudget(1000)
    pool = BufferPool(keep=4, max_size=PART, budget=budget)
    pool.give(io.BytesIO(), 400)
    pool.give(io.BytesIO(), 400)
    assert budget.idle == 800
    pool.give(io.BytesIO(), 400)  # would not fit in the budget: let go
    assert budget.idle == 800 and len(pool._spare) == 2
    pool.take()
    assert budget.idle == 400
    pool.drain()
    assert budget.idle == 0 and pool._spare == []


# --- ObjectBuffers ----------------------------------------------------------------------------


def buffers_for(
    budget: MemoryBudget | None = None,
    *,
    first_size: int = PART,
    size_hint: int | None = None,
    pool: BufferPool | None = None,
) -> ObjectBuffers:
    return ObjectBuffers(
        budget,
        pool or BufferPool(keep=2, max_size=PART, budget=budget),
        part_size=PART,
        first_size=first_size,
        size_hint=size_hint,
    )


def test_a_buffer_reserves_at_most_a_part_and_fills_only_what_it_reserved() -> None:
    buffers = buffers_for(first_size=3 * PART)  # a first buffer held for one PutObject
    assert buffers.try_grow()
    assert buffers.current.reserved == PART
    rest = buffers.fill(memoryview(b"x" * (PART + 5)))
    assert (buffers.current.size, len(rest), buffers.buffered) == (PART, 5, PART)
    assert buffers.try_grow() and buffers.current.reserved == 2 * PART


def test_the_size_hint_bounds_what_is_reserved() -> None:
    budget = MemoryBudget(10 * PART)
    buffers = buffers_for(budget, size_hint=250)
    assert buffers.try_grow()
    assert budget.used == 250
    buffers.fill(memoryview(b"x" * 250))
    # The hint was too small (more bytes came): the rest of the part, as without a hint.
    assert buffers.try_grow() and budget.used == PART


def test_the_first_buffer_may_hold_a_whole_object_and_later_ones_a_part() -> None:
    buffers = buffers_for(first_size=3 * PART)
    assert buffers.fill_to == 3 * PART
    buffers.try_grow()
    buffers.fill(memoryview(b"x" * 10))
    full = buffers.current
    buffers.hold_current()
    assert buffers.held == [full] and buffers.fill_to == PART
    assert buffers.current is not full and buffers.held_bytes == 10


def test_hold_last_holds_only_a_buffer_with_bytes() -> None:
    buffers = buffers_for()
    buffers.hold_last()
    assert buffers.held == []
    buffers.try_grow()
    buffers.fill(memoryview(b"x"))
    buffers.hold_last()
    assert len(buffers.held) == 1 and buffers.current.size == 0


def test_try_grow_drops_idle_pooled_buffers_before_giving_up() -> None:
    budget = MemoryBudget(PART)
    pool = BufferPool(keep=2, max_size=PART, budget=budget)
    pool.give(io.BytesIO(), PART)
    buffers = buffers_for(budget, pool=pool)
    assert buffers.try_grow()  # the idle buffer was dropped to make room
    assert pool._spare == [] and budget.idle == 0 and budget.used == PART
    assert not buffers_for(budget).try_grow()  # nothing left to drop


async def test_grow_runs_on_wait_then_waits_for_memory() -> None:
    budget = MemoryBudget(PART)
    assert budget.try_acquire(PART)
    told: list[int] = []

    async def on_wait() -> None:
        told.append(budget.waiting)

    buffers = ObjectBuffers(
        budget, BufferPool(2, PART, budget), part_size=PART, first_size=PART, on_wait=on_wait
    )
    growing = asyncio.ensure_future(buffers.grow())
    await asyncio.sleep(0.02)
    assert told == [0] and not growing.done()  # told before it queued, then waiting
    budget.release(PART)
    await asyncio.wait_for(growing, timeout=5)
    assert buffers.current.reserved == PART and budget.used == PART


def test_release_drops_every_buffer_and_its_memory() -> None:
    budget = MemoryBudget(10 * PART)
    buffers = buffers_for(budget, first_size=2 * PART)
    for _ in range(2):
        buffers.try_grow()
        buffers.fill(memoryview(b"x" * PART))
    buffers.hold_current()
    buffers.try_grow()
    buffers.fill(memoryview(b"y" * 10))
    assert budget.used == 3 * PART and buffers.held_bytes == 2 * PART + 10
    buffers.release()
    assert budget.used == 0 and buffers.held == [] and buffers.held_bytes == 0
