"""The storage layer against a recording fake: call order, strategy, abort, backpressure."""

from __future__ import annotations

import asyncio
import ctypes
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.errors import BodyTooLarge, StorageFailed
from app.forms.multipart import MultipartStream, PartEnd, PartStart
from app.storage import S3Client
from app.storage.budget import MemoryBudget
from app.storage.providers import PROFILES
from app.storage.sendpath import PartBody
from app.units import MiB
from harness.forms import FilePart, content_type, multipart_body
from tests.unit.fakes import FakeS3, md5_etag

pytestmark = pytest.mark.anyio

PART = 5 * MiB
THRESHOLD = 12 * MiB


def make_storage(fake: FakeS3, parts_in_flight: int = 1) -> S3Client:
    return S3Client(
        fake,
        "bucket",
        part_size=PART,
        multipart_threshold=THRESHOLD,
        parts_in_flight=parts_in_flight,
    )


async def stream_of(data: bytes, chunk: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), chunk):
        yield data[start : start + chunk]


def data_of(size: int) -> bytes:
    return bytes(i % 251 for i in range(size))


async def test_upload_stream_small_file() -> None:
    fake = FakeS3()
    data = data_of(1000)
    written = await make_storage(fake).upload_stream(stream_of(data), "k", "text/plain")

    assert written == 1000
    assert fake.names() == ["create_multipart_upload", "upload_part", "complete_multipart_upload"]
    assert fake.calls[0][1] == {"Bucket": "bucket", "Key": "k", "ContentType": "text/plain"}
    assert fake.calls[1][1]["PartNumber"] == 1 and fake.calls[1][1]["UploadId"] == "upload-1"
    parts = fake.calls[2][1]["MultipartUpload"]["Parts"]
    assert parts == [{"ETag": md5_etag(fake.bodies[1]), "PartNumber": 1}]
    assert fake.objects["k"] == data


async def test_upload_stream_multi_part() -> None:
    fake = FakeS3()
    data = data_of(3 * PART)
    written = await make_storage(fake).upload_stream(
        stream_of(data, 100_000), "k", "video/mp4", chunk_size=PART
    )

    assert written == 3 * PART
    assert fake.names() == ["create_multipart_upload"] + ["upload_part"] * 3 + [
        "complete_multipart_upload"
    ]
    assert [len(fake.bodies[n]) for n in (1, 2, 3)] == [PART, PART, PART]
    parts = fake.calls[-1][1]["MultipartUpload"]["Parts"]
    assert [p["PartNumber"] for p in parts] == [1, 2, 3]
    assert fake.objects["k"] == data


async def test_upload_stream_abort_on_error() -> None:
    fake = FakeS3()

    async def failing() -> AsyncIterator[bytes]:
        yield data_of(PART)
        yield data_of(PART)
        raise OSError("client went away")

    with pytest.raises(OSError, match="client went away"):
        await make_storage(fake).upload_stream(failing(), "k", "video/mp4")

    assert "complete_multipart_upload" not in fake.names()
    assert fake.names()[-1] == "abort_multipart_upload"
    assert fake.calls[-1][1] == {"Bucket": "bucket", "Key": "k", "UploadId": "upload-1"}
    assert "k" not in fake.objects


async def test_upload_smart_small_uses_simple() -> None:
    fake = FakeS3()
    data = data_of(3 * MiB)
    stored = await make_storage(fake).upload_smart(
        stream_of(data), "k", "image/png", size_hint=len(data)
    )

    assert fake.names() == ["put_object"]
    assert fake.calls[0][1]["ContentType"] == "image/png"
    assert (stored.strategy, stored.parts, stored.size) == ("single", 1, len(data))
    assert fake.objects["k"] == data


async def test_upload_smart_large_uses_multipart() -> None:
    fake = FakeS3()
    data = data_of(THRESHOLD + 1)
    stored = await make_storage(fake).upload_smart(
        stream_of(data), "k", "video/mp4", size_hint=len(data)
    )

    assert fake.names() == ["create_multipart_upload"] + ["upload_part"] * 3 + [
        "complete_multipart_upload"
    ]
    assert (stored.strategy, stored.parts) == ("multipart", 3)
    assert fake.objects["k"] == data


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000, 65536])
def test_upload_file_chunks_generator(chunk: int) -> None:
    """Body chunks in, exactly the file's bytes out, in order, however the body is split."""
    data = data_of(5000) + b"\r\n--almost-a-boundary\r\n" + data_of(3000)
    body = multipart_body([FilePart("file", "a.bin", data)])
    form = MultipartStream({"content-type": content_type()}, max_part_header_bytes=16384)

    events = []
    for start in range(0, len(body), chunk):
        events.extend(form.feed(body[start : start + chunk]))
    events += form.finish()

    assert isinstance(events[0], PartStart) and events[0].filename == "a.bin"
    assert isinstance(events[-1], PartEnd)
    file_bytes = [e for e in events if isinstance(e, bytes)]
    assert b"".join(file_bytes) == data
    assert all(len(piece) <= max(chunk, 2048) for piece in file_bytes)


# --- beyond the seed: strategy edges, ordering, failures, backpressure ------------------------


@pytest.mark.parametrize(
    ("size", "hint", "expected"),
    [
        (0, None, ["put_object"]),
        (PART, None, ["put_object"]),
        (PART + 1, None, ["create_multipart_upload", "upload_part", "upload_part"]),
        (THRESHOLD - 1, THRESHOLD - 1, ["put_object"]),
        (THRESHOLD, THRESHOLD, ["create_multipart_upload"] + ["upload_part"] * 3),
        # A hint that lies (smaller than the object): held up to the threshold, then that
        # buffer goes as a larger first part (not cut up, which would copy it), then parts.
        (THRESHOLD + 1, 10, ["create_multipart_upload"] + ["upload_part"] * 2),
        (3 * THRESHOLD, 10, ["create_multipart_upload"] + ["upload_part"] * 6),
    ],
)
async def test_strategy_edges(size: int, hint: int | None, expected: list[str]) -> None:
    fake = FakeS3()
    data = data_of(size)
    stored = await make_storage(fake).upload_smart(stream_of(data), "k", "x/y", size_hint=hint)
    tail = [] if expected == ["put_object"] else ["complete_multipart_upload"]
    assert fake.names() == expected + tail
    assert fake.objects["k"] == data and stored.size == size
    part_sizes = [len(body) for _, body in sorted(fake.bodies.items())]
    first = THRESHOLD if hint is not None and hint < size else PART
    # Every part but the last is full; a single-put buffer that overflowed is part 1.
    assert part_sizes[:1] in ([], [first], [size])
    assert all(n == PART for n in part_sizes[1:-1])


async def test_parts_finishing_out_of_order_complete_in_order() -> None:
    fake = FakeS3()
    fake.delays = {1: 0.05, 2: 0.0, 3: 0.02, 4: 0.0}
    data = data_of(3 * PART + 10)
    await make_storage(fake, parts_in_flight=4).upload_stream(stream_of(data, MiB), "k", "a/b")
    parts = fake.calls[-1][1]["MultipartUpload"]["Parts"]
    assert [p["PartNumber"] for p in parts] == [1, 2, 3, 4]
    assert [p["ETag"] for p in parts] == [md5_etag(fake.bodies[n]) for n in (1, 2, 3, 4)]
    assert fake.objects["k"] == data


async def test_failed_part_aborts_and_raises_storage_failed() -> None:
    fake = FakeS3()
    fake.fail = {"upload_part": 2}
    with pytest.raises(StorageFailed):
        await make_storage(fake).upload_stream(stream_of(data_of(4 * PART)), "k", "a/b")
    assert fake.names()[-1] == "abort_multipart_upload"
    assert "complete_multipart_upload" not in fake.names()


async def test_failed_complete_aborts() -> None:
    fake = FakeS3()
    fake.fail = {"complete_multipart_upload": 1}
    with pytest.raises(StorageFailed):
        await make_storage(fake).upload_stream(stream_of(data_of(PART + 1)), "k", "a/b")
    assert fake.names()[-1] == "abort_multipart_upload"


async def test_committed_object_is_deleted_on_abort() -> None:
    fake = FakeS3()
    upload = make_storage(fake).open_upload("k", "a/b", size_hint=10)
    await upload.write(b"0123456789")
    await upload.commit()
    assert fake.objects["k"] == b"0123456789"
    await upload.abort()
    assert fake.names()[-1] == "delete_object" and "k" not in fake.objects


async def test_write_blocks_while_every_upload_slot_is_busy() -> None:
    """Backpressure: with one slot taken, the next full part makes write() wait."""
    fake = FakeS3()
    fake.gate = asyncio.Event()
    upload = make_storage(fake, parts_in_flight=1).open_upload("k", "a/b")

    await upload.write(data_of(PART + 1))  # part 1 goes out (and hangs at the gate)
    await upload.write(data_of(PART - 2))  # part 2 fills: buffered, returns at once
    assert upload.held_bytes == PART - 1
    blocked = asyncio.ensure_future(upload.write(b"x"))  # part 2 is full: needs the busy slot
    # Part 1 reaches the store once its MD5 (in a thread) is done; then give `blocked` time to
    # get as far as it can: only the gate, never the clock, lets it finish.
    await asyncio.wait_for(fake.part_started.wait(), timeout=5)
    await asyncio.sleep(0.05)
    assert not blocked.done()
    assert fake.names() == ["create_multipart_upload", "upload_part"]

    fake.gate.set()
    await asyncio.wait_for(blocked, timeout=5)
    await upload.commit()
    assert fake.names()[-1] == "complete_multipart_upload"
    assert len(fake.objects["k"]) == 2 * PART


async def test_cancelled_upload_is_still_aborted() -> None:
    fake = FakeS3()
    fake.gate = asyncio.Event()  # never set: the first part hangs forever
    storage = make_storage(fake)
    task = asyncio.ensure_future(storage.upload_stream(stream_of(data_of(3 * PART)), "k", "a/b"))
    await asyncio.wait_for(fake.part_started.wait(), timeout=5)
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await storage.wait_for_cleanups(grace=5)
    assert fake.names()[-1] == "abort_multipart_upload"
    assert "complete_multipart_upload" not in fake.names()


async def test_spill_sends_a_held_small_file_as_one_part() -> None:
    fake = FakeS3()
    upload = make_storage(fake).open_upload("k", "a/b", size_hint=None)
    await upload.write(data_of(1000))
    await upload.close()
    assert upload.held_bytes == 1000 and fake.names() == []
    await upload.spill()
    assert upload.held_bytes == 0
    stored = await upload.commit()
    assert (stored.strategy, stored.parts) == ("multipart", 1)
    assert fake.objects["k"] == data_of(1000)


async def test_part_buffers_are_reused_and_cut_to_each_part() -> None:
    """Stored parts' buffers go back to a small pool (no fresh pages per part); a reused
    buffer still sends exactly its own part's bytes, the short last one included."""
    fake = FakeS3()
    memory: list[int] = []  # where each part's bytes were sent from
    original = fake.upload_part

    async def recording(**kwargs: Any) -> dict[str, Any]:
        body: PartBody = kwargs["Body"]
        with body.view(0) as view:
            memory.append(ctypes.addressof(ctypes.c_char.from_buffer(view)))
        body.seek(0)
        return await original(**kwargs)

    fake.upload_part = recording  # type: ignore[method-assign]
    data = data_of(6 * PART + 123)
    stored = await make_storage(fake).upload_stream(stream_of(data), "k", "a/b")
    assert stored == len(data) and fake.objects["k"] == data
    assert len(memory) == 7 and len(set(memory)) <= 3


# --- objects of unknown length (chunked bodies): growing parts, and the part limit ---------


def limited_storage(fake: FakeS3, provider: str, max_parts: int) -> S3Client:
    """A store of `provider`'s kind that takes `max_parts` parts, a 64 MiB budget."""
    return S3Client(
        fake,
        "bucket",
        part_size=PART,
        multipart_threshold=THRESHOLD,
        budget=MemoryBudget(64 * MiB),
        provider=dataclasses.replace(PROFILES[provider], max_parts=max_parts),
    )


async def test_parts_of_an_object_of_unknown_length_grow_up_to_the_budget_s_share() -> None:
    """20 parts at most: each tenth (2 parts) doubles the last, up to 32 MiB (half the
    64 MiB budget: one part sending, one filling)."""
    fake = FakeS3()
    data = data_of(120 * MiB)
    upload = limited_storage(fake, "generic", 20).open_upload("k", "a/b")  # no size hint
    stored = await upload.consume(stream_of(data, chunk=1 * MiB))
    sizes = [len(fake.bodies[n]) for n in sorted(fake.bodies)]
    assert sizes == [5 * MiB, 5 * MiB, 10 * MiB, 10 * MiB, 20 * MiB, 20 * MiB, 32 * MiB, 18 * MiB]
    assert stored.size == len(data) and fake.objects["k"] == data


async def test_a_known_length_keeps_equal_parts() -> None:
    fake = FakeS3()
    data = data_of(40 * MiB)
    storage = limited_storage(fake, "generic", 20)
    await storage.open_upload("k", "a/b", size_hint=len(data)).consume(stream_of(data))
    assert {len(body) for body in fake.bodies.values()} == {5 * MiB}


async def test_an_equal_parts_store_refuses_past_its_parts_and_aborts() -> None:
    """R2 takes equal parts only: 3 parts of 5 MiB are all an unknown length may hold."""
    fake = FakeS3()
    storage = limited_storage(fake, "r2", 3)
    exactly = data_of(3 * PART)
    await storage.open_upload("fits", "a/b").consume(stream_of(exactly))
    assert fake.objects["fits"] == exactly  # three full parts: the limit itself is fine
    with pytest.raises(BodyTooLarge, match=f"larger than the {3 * PART} bytes that 3 parts"):
        await storage.open_upload("k", "a/b").consume(stream_of(data_of(3 * PART + 1)))
    assert "k" not in fake.objects
    assert [name for name, kw in fake.calls if kw.get("Key") == "k"][-1] == "abort_multipart_upload"
    parts = [kw for name, kw in fake.calls if name == "upload_part" and kw["Key"] == "k"]
    assert max(kw["PartNumber"] for kw in parts) <= 3  # refused before a fourth was sent
