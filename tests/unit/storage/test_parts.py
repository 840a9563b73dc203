"""Part scheduling: slots bound the parts in flight, parts are numbered in the order given,
and the first failure stops everything after it.

The parts here are sent by small coroutines that record what they were given; no S3 API is
involved (the call order against one is in test_multipart.py and test_upload.py).
"""

from __future__ import annotations

import asyncio

import pytest

from app.errors import IntegrityFailed, StorageFailed
from app.storage.budget import MemoryBudget
from app.storage.buffers import PartBuffer
from app.storage.parts import PartScheduler

pytestmark = pytest.mark.anyio


def part(data: bytes, budget: MemoryBudget | None = None) -> PartBuffer:
    buffer = PartBuffer(budget)
    if budget is not None:
        assert budget.try_acquire(len(data))
        buffer.reserved = len(data)
    buffer.append(data)
    return buffer


class Recorder:
    """Sends parts by recording them; each waits for `gate` (if set) before it ends."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, bytes]] = []
        self.running = 0
        self.most_running = 0
        self.gate: asyncio.Event | None = None
        self.fail: dict[int, BaseException] = {}  # part number -> what it raises

    async def send(self, number: int, body: PartBuffer) -> None:
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            with body.sending() as part:
                self.sent.append((number, part.read()))
            if self.gate is not None:
                await self.gate.wait()
            else:
                await asyncio.sleep(0)
            if number in self.fail:
                raise self.fail[number]
        finally:
            self.running -= 1


async def test_parts_are_numbered_in_the_order_given_and_all_waited_for() -> None:
    recorder = Recorder()
    scheduler = PartScheduler(3, recorder.send)
    for data in (b"a", b"b", b"c", b"d", b"e"):
        await scheduler.submit(part(data))
    await scheduler.wait()
    assert sorted(recorder.sent) == [(1, b"a"), (2, b"b"), (3, b"c"), (4, b"d"), (5, b"e")]
    assert recorder.most_running <= 3 and recorder.running == 0


async def test_submit_waits_while_every_slot_is_busy() -> None:
    """Backpressure: the part after the slots are taken is not accepted until one frees."""
    recorder = Recorder()
    recorder.gate = asyncio.Event()
    scheduler = PartScheduler(2, recorder.send)
    await scheduler.submit(part(b"1"))
    await scheduler.submit(part(b"2"))
    third = asyncio.ensure_future(scheduler.submit(part(b"3")))
    await asyncio.sleep(0.02)
    assert not third.done() and [n for n, _ in recorder.sent] == [1, 2]
    recorder.gate.set()
    await asyncio.wait_for(third, timeout=5)
    await scheduler.wait()
    assert [n for n, _ in recorder.sent] == [1, 2, 3] and recorder.most_running == 2


async def test_a_part_sent_or_failed_gives_its_memory_back() -> None:
    budget = MemoryBudget(100)
    recorder = Recorder()
    recorder.fail = {2: ConnectionError("reset")}
    scheduler = PartScheduler(2, recorder.send)
    await scheduler.submit(part(b"x" * 10, budget))
    await scheduler.submit(part(b"y" * 20, budget))
    with pytest.raises(StorageFailed):
        await scheduler.wait()
    assert budget.used == 0


async def test_the_first_failure_is_kept_and_refuses_every_later_part() -> None:
    budget = MemoryBudget(100)
    recorder = Recorder()
    first = StorageFailed("storage UploadPart failed: SlowDown")
    recorder.fail = {1: first, 2: StorageFailed("storage UploadPart failed: later")}
    scheduler = PartScheduler(2, recorder.send)
    await scheduler.submit(part(b"1"))
    await scheduler.submit(part(b"2"))
    with pytest.raises(StorageFailed) as waited:
        await scheduler.wait()
    assert waited.value is first and scheduler.failure is first

    refused = part(b"3" * 30, budget)
    with pytest.raises(StorageFailed) as submitted:
        await scheduler.submit(refused)
    assert submitted.value is first
    assert [n for n, _ in recorder.sent] == [1, 2]  # part 3 was never sent...
    assert refused.reserved == 0 and budget.used == 0  # ...and its memory is free again


async def test_a_failure_that_is_not_a_storage_error_is_reported_as_one() -> None:
    recorder = Recorder()
    recorder.fail = {1: KeyError("ETag")}
    scheduler = PartScheduler(1, recorder.send)
    await scheduler.submit(part(b"1"))
    with pytest.raises(StorageFailed, match="part upload failed: 'ETag'"):
        await scheduler.wait()


async def test_an_integrity_failure_stays_one() -> None:
    recorder = Recorder()
    recorder.fail = {1: IntegrityFailed("storage answered another ETag")}
    scheduler = PartScheduler(1, recorder.send)
    await scheduler.submit(part(b"1"))
    with pytest.raises(IntegrityFailed):
        await scheduler.wait()


async def test_cancel_stops_the_parts_in_flight_and_frees_their_slots() -> None:
    budget = MemoryBudget(100)
    recorder = Recorder()
    recorder.gate = asyncio.Event()  # never set: parts hang until cancelled
    scheduler = PartScheduler(2, recorder.send)
    await scheduler.submit(part(b"a" * 10, budget))
    await scheduler.submit(part(b"b" * 10, budget))
    await asyncio.sleep(0)
    assert recorder.running == 2
    await scheduler.cancel()
    assert recorder.running == 0 and budget.used == 0
    assert scheduler.failure is None  # a cancelled part is not a failure
    await asyncio.wait_for(scheduler.submit(part(b"c")), timeout=5)  # slots are free again
    await asyncio.wait_for(scheduler.cancel(), timeout=5)


async def test_a_caller_cancelled_while_waiting_for_a_slot_leaves_nothing_held() -> None:
    budget = MemoryBudget(100)
    recorder = Recorder()
    recorder.gate = asyncio.Event()
    scheduler = PartScheduler(1, recorder.send)
    await scheduler.submit(part(b"a" * 10, budget))
    waiting = asyncio.ensure_future(scheduler.submit(part(b"b" * 10, budget)))
    await asyncio.sleep(0.02)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert budget.used == 10  # only the part in flight
    recorder.gate.set()
    await scheduler.wait()
    assert [n for n, _ in recorder.sent] == [1] and budget.used == 0
