"""The process-wide memory budget: the counter itself, then uploads sharing one."""

from __future__ import annotations

import asyncio
import random

import pytest

from app.storage.budget import MemoryBudget
from app.storage.client import S3Client
from app.units import MiB
from tests.unit.fakes import FakeS3

pytestmark = pytest.mark.anyio

PART = 5 * MiB


# --- the counter ------------------------------------------------------------------------------


async def test_acquire_waits_until_release_and_serves_in_order() -> None:
    budget = MemoryBudget(100)
    await budget.acquire(80)
    order: list[str] = []

    async def take(name: str, size: int) -> None:
        await budget.acquire(size)
        order.append(name)

    first = asyncio.ensure_future(take("first", 50))
    await asyncio.sleep(0)
    second = asyncio.ensure_future(take("second", 10))  # would fit now, but queues behind
    await asyncio.sleep(0.01)
    assert order == [] and budget.waiting == 2
    assert not budget.try_acquire(1)  # nobody jumps the queue
    budget.release(80)
    await asyncio.gather(first, second)
    assert order == ["first", "second"] and budget.used == 60 and budget.peak == 80


async def test_a_reservation_larger_than_the_budget_is_granted_alone() -> None:
    budget = MemoryBudget(10)
    await budget.acquire(5)
    big = asyncio.ensure_future(budget.acquire(25))
    await asyncio.sleep(0.01)
    assert not big.done()
    budget.release(5)
    await asyncio.wait_for(big, 1)
    assert budget.used == 25


async def test_a_cancelled_waiter_leaves_the_queue_and_wakes_the_next() -> None:
    budget = MemoryBudget(10)
    await budget.acquire(10)
    blocked = asyncio.ensure_future(budget.acquire(10))
    after = asyncio.ensure_future(budget.acquire(5))
    await asyncio.sleep(0.01)
    blocked.cancel()
    with pytest.raises(asyncio.CancelledError):
        await blocked
    budget.release(5)  # 5 in use: the cancelled 10 would not fit, the 5 behind it does
    await asyncio.wait_for(after, 1)
    assert budget.used == 10 and budget.waiting == 0


async def test_a_grant_racing_a_cancellation_is_given_back() -> None:
    budget = MemoryBudget(10)
    await budget.acquire(10)
    waiter = asyncio.ensure_future(budget.acquire(10))
    await asyncio.sleep(0.01)
    budget.release(10)  # grants the waiter...
    waiter.cancel()  # ...which is cancelled before it runs again
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert budget.used == 0


# --- uploads sharing a budget -----------------------------------------------------------------


def storage_with(fake: FakeS3, budget: MemoryBudget, threshold: int = 3 * PART) -> S3Client:
    return S3Client(fake, "b", part_size=PART, multipart_threshold=threshold, budget=budget)


def data_of(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


async def test_concurrent_uploads_never_hold_more_than_the_budget() -> None:
    fake = FakeS3()
    fake.delays = {n: 0.002 * n for n in range(1, 20)}  # storage slower than the clients
    budget = MemoryBudget(3 * PART)
    storage = storage_with(fake, budget)
    sizes = [7 * MiB + i * 777_777 for i in range(16)]  # single puts and multipart uploads
    datas = [data_of(size, i) for i, size in enumerate(sizes)]
    biggest_held = 0

    async def one(i: int) -> None:
        nonlocal biggest_held
        upload = storage.open_upload(f"k{i}", "a/b", size_hint=sizes[i] + 300)
        for start in range(0, sizes[i], 256 * 1024):
            await upload.write(datas[i][start : start + 256 * 1024])
            biggest_held = max(biggest_held, budget.used)
        await upload.commit()

    await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(16))), timeout=30)
    assert all(fake.objects[f"k{i}"] == datas[i] for i in range(16))
    assert budget.peak <= budget.limit and biggest_held <= budget.limit
    assert budget.used == 0


async def test_a_single_put_buffer_that_cannot_grow_becomes_multipart() -> None:
    fake = FakeS3()
    budget = MemoryBudget(3 * PART)
    storage = storage_with(fake, budget, threshold=6 * PART)
    other = storage.open_upload("other", "a/b", size_hint=None)
    await other.write(data_of(PART, 1))  # holds one part of the budget, not sent yet
    data = data_of(4 * PART, 2)
    upload = storage.open_upload("k", "a/b", size_hint=len(data))  # would be one PutObject
    await asyncio.wait_for(upload.write(data), timeout=5)
    stored = await upload.commit()
    assert stored.strategy == "multipart" and fake.objects["k"] == data
    # The held buffer (two parts' worth) went as part 1, unsplit; the rest as parts.
    assert [len(fake.parts["k", n]) for n in (1, 2, 3)] == [2 * PART, PART, PART]
    await other.abort()
    assert budget.used == 0 and budget.peak <= budget.limit


async def test_a_small_file_reserves_only_what_can_come() -> None:
    budget = MemoryBudget(10 * PART)
    upload = storage_with(FakeS3(), budget).open_upload("k", "a/b", size_hint=1000)
    await upload.write(b"x" * 600)
    assert budget.used == 1000
    await upload.close()  # the end is known: the unused reservation is given back
    assert budget.used == 600
    await upload.commit()
    assert budget.used == 0


@pytest.mark.parametrize("fail", ["upload_part", "complete_multipart_upload", "put_object"])
async def test_failed_and_aborted_uploads_give_their_memory_back(fail: str) -> None:
    fake = FakeS3()
    fake.fail = {fail: 1}
    budget = MemoryBudget(4 * PART)
    storage = storage_with(fake, budget)
    size = 2 * PART if fail == "put_object" else 4 * PART + 1
    upload = storage.open_upload("k", "a/b", size_hint=size)
    with pytest.raises(Exception, match="injected failure"):
        await upload.write(data_of(size, 3))
        await upload.commit()
    await upload.abort()
    await storage.wait_for_cleanups(grace=5)
    assert budget.used == 0


async def test_a_cancelled_upload_waiting_for_memory_holds_nothing() -> None:
    fake = FakeS3()
    fake.gate = asyncio.Event()  # parts hang: memory is not freed
    budget = MemoryBudget(2 * PART)
    storage = storage_with(fake, budget)
    first = storage.open_upload("a", "a/b")
    await first.write(data_of(2 * PART - 1, 4))  # part 1 in flight, part 2 filling: all of it
    second = storage.open_upload("b", "a/b")
    waiting = asyncio.ensure_future(second.write(b"y" * 10))
    await asyncio.sleep(0.02)
    assert not waiting.done() and budget.waiting == 1
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await second.abort()
    await first.abort()
    await storage.wait_for_cleanups(grace=5)
    assert budget.used == 0 and budget.waiting == 0
