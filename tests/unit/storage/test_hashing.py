"""The object's SHA-256, hashed part by part in worker threads (app/storage/hashing.py).

Some tests inject a hasher in place of hashlib's SHA-256 (injected, and said where): one
that records what it was fed, or one that blocks in its thread until the test lets it go, so
that "a thread is still hashing" is a state the test holds, not a timing it hopes for.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import random
import threading
from collections.abc import AsyncIterator

import pytest

from app.storage import upload as upload_module
from app.storage.budget import MemoryBudget
from app.storage.buffers import BufferPool, PartBuffer
from app.storage.client import S3Client
from app.storage.hashing import ObjectHash
from app.units import MiB
from tests.unit.fakes import FakeS3

pytestmark = pytest.mark.anyio

PART = 5 * MiB
THRESHOLD = 12 * MiB


class RecordingHasher:
    """SHA-256 that also keeps a copy of each piece it was fed, in order (injected)."""

    def __init__(self) -> None:
        self.pieces: list[bytes] = []
        self.threads: set[str] = set()
        self._hash = hashlib.sha256()

    def update(self, data: memoryview, /) -> None:
        self.pieces.append(bytes(data))
        self.threads.add(threading.current_thread().name)
        self._hash.update(data)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


class GatedHasher(RecordingHasher):
    """Blocks in update() until `gate` is set (injected): a hash job the test holds open."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.running = 0

    def update(self, data: memoryview, /) -> None:
        self.running += 1
        self.entered.set()
        try:
            assert self.gate.wait(30), "the test never let the hasher go"
            super().update(data)
        finally:
            self.running -= 1

    async def wait_entered(self) -> None:
        assert await asyncio.to_thread(self.entered.wait, 30)
        self.entered.clear()


def storage_for(fake: FakeS3, budget: MemoryBudget | None = None) -> S3Client:
    return S3Client(
        fake, "b", part_size=PART, multipart_threshold=THRESHOLD, parts_in_flight=2, budget=budget
    )


def inject(monkeypatch: pytest.MonkeyPatch, hasher: RecordingHasher) -> None:
    """Every upload opened from here on hashes with `hasher` (injected)."""
    monkeypatch.setattr(upload_module, "ObjectHash", functools.partial(ObjectHash, lambda: hasher))


def data_of(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def chunked(data: bytes, sizes: list[int]) -> list[bytes]:
    """`data` cut into chunks whose sizes cycle through `sizes`."""
    chunks, at, n = [], 0, 0
    while at < len(data):
        step = sizes[n % len(sizes)]
        chunks.append(data[at : at + step])
        at, n = at + step, n + 1
    return chunks


SIZES = [0, 1, PART - 1, PART, PART + 1, 2 * PART, 3 * PART + 7, THRESHOLD + 1]
CHUNKS = [[64 * 1024], [MiB + 3], [7, 1000, 65536, 3 * MiB], [6 * MiB]]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("hint", ["none", "exact"])
@pytest.mark.parametrize("chunks", CHUNKS, ids=lambda c: "-".join(map(str, c)))
async def test_the_digest_is_sha256_of_the_bytes(size: int, hint: str, chunks: list[int]) -> None:
    fake = FakeS3()
    data = data_of(size, size)
    upload = storage_for(fake).open_upload("k", "a/b", size_hint=size if hint == "exact" else None)
    for chunk in chunked(data, chunks):
        await upload.write(chunk)
    stored = await upload.commit()
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert fake.objects["k"] == data


@pytest.mark.parametrize("size", [0, 1, PART, PART + 1, 2 * PART - 1])
async def test_forced_multipart_and_spilled_objects_have_the_right_digest(size: int) -> None:
    data = data_of(size, 3)
    storage = storage_for(FakeS3())
    forced = storage.open_upload("forced", "a/b", force_multipart=True)
    spilled = storage.open_upload("spilled", "a/b", size_hint=size)
    for upload in (forced, spilled):
        for chunk in chunked(data, [MiB - 1]):
            await upload.write(chunk)
    await spilled.close()
    await spilled.spill()  # held for one PutObject, then sent as parts
    for upload in (forced, spilled):
        assert (await upload.commit()).sha256 == hashlib.sha256(data).hexdigest()


async def test_the_stream_helpers_answer_the_digest() -> None:
    data = data_of(2 * PART + 5)

    async def stream() -> AsyncIterator[bytes]:
        for chunk in chunked(data, [MiB]):
            yield chunk

    stored = await storage_for(FakeS3()).upload_smart(stream(), "k", "a/b")
    assert stored.sha256 == hashlib.sha256(data).hexdigest()


async def test_each_part_is_hashed_whole_once_in_order_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hasher = RecordingHasher()
    inject(monkeypatch, hasher)
    data = data_of(3 * PART + 11)
    upload = storage_for(FakeS3()).open_upload("k", "a/b")
    for chunk in chunked(data, [100_000, 7]):
        await upload.write(chunk)
    await upload.commit()
    assert [len(p) for p in hasher.pieces] == [PART, PART, PART, 11]
    assert b"".join(hasher.pieces) == data
    assert threading.main_thread().name not in hasher.threads


async def test_the_digest_is_final_only_once_closed() -> None:
    upload = storage_for(FakeS3()).open_upload("k", "a/b")
    await upload.write(b"abc")
    with pytest.raises(RuntimeError, match="not final"):
        _ = upload.sha256
    await upload.close()
    assert upload.sha256 == hashlib.sha256(b"abc").hexdigest()


async def test_a_buffer_is_pooled_and_its_memory_freed_only_once_the_hash_has_read_it() -> None:
    hasher = GatedHasher()  # injected: the hash job stays in its thread until the gate opens
    budget = MemoryBudget(10 * PART)
    pool = BufferPool(keep=4, max_size=PART, budget=budget)
    part = PartBuffer(budget, pool)
    assert budget.try_acquire(1000)
    part.reserved = 1000
    part.append(b"x" * 1000)
    digest = ObjectHash(lambda: hasher)
    await digest.add(part)
    await hasher.wait_entered()
    part.release(reuse=True)  # the part was stored, but the hash thread still reads it
    assert pool._spare == [] and budget.used == 1000
    md5 = await part.digest(lambda view: hashlib.md5(view).digest())  # a second reader meanwhile
    assert md5 == hashlib.md5(b"x" * 1000).digest()
    assert pool._spare == [] and budget.used == 1000
    hasher.gate.set()
    assert await digest.digest() == hashlib.sha256(b"x" * 1000).hexdigest()
    assert len(pool._spare) == 1 and budget.used == 0


async def test_the_hash_is_at_most_one_part_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    hasher = GatedHasher()  # injected
    inject(monkeypatch, hasher)
    upload = storage_for(FakeS3()).open_upload("k", "a/b")
    await upload.write(data_of(PART + 1))  # part 1 is full: its hash job starts
    await hasher.wait_entered()
    await upload.write(data_of(PART - 2))  # part 2 fills while part 1 is hashed
    blocked = asyncio.ensure_future(upload.write(b"y"))  # part 2 full: waits for part 1's hash
    await asyncio.sleep(0.05)
    assert not blocked.done()  # cannot be: the hasher holds part 1 until the gate opens
    hasher.gate.set()
    await asyncio.wait_for(blocked, timeout=30)
    await upload.commit()
    assert [len(p) for p in hasher.pieces] == [PART, PART]


async def test_abort_during_hashing_returns_once_no_thread_reads_a_buffer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hasher = GatedHasher()  # injected
    inject(monkeypatch, hasher)
    fake = FakeS3()
    budget = MemoryBudget(10 * PART)
    storage = storage_for(fake, budget)
    upload = storage.open_upload("k", "a/b")
    await upload.write(data_of(PART + 1))
    await hasher.wait_entered()
    aborting = asyncio.ensure_future(upload.abort())
    await asyncio.sleep(0.05)
    assert not aborting.done() and hasher.running == 1  # it waits for the hash thread
    hasher.gate.set()
    await asyncio.wait_for(aborting, timeout=30)
    assert hasher.running == 0 and budget.used == 0
    assert fake.names()[-1] == "abort_multipart_upload"


async def test_a_failing_hasher_fails_the_upload(monkeypatch: pytest.MonkeyPatch) -> None:
    class FailingHasher(RecordingHasher):  # injected fault
        def update(self, data: memoryview, /) -> None:
            raise ValueError("injected hash failure")

    inject(monkeypatch, FailingHasher())
    fake = FakeS3()
    upload = storage_for(fake).open_upload("k", "a/b")
    with pytest.raises(ValueError, match="injected hash failure"):
        await upload.consume(_one(data_of(PART + 1)))
    assert "k" not in fake.objects and fake.names()[-1] == "abort_multipart_upload"


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data
