"""ObjectUpload's state and route move as documented (app/storage/upload.py), against the
recording fake: open -> closed -> committed, or aborted; single_put -> multipart."""

from __future__ import annotations

import asyncio

import pytest

from app.storage.budget import MemoryBudget
from app.storage.client import S3Client
from app.units import MiB
from tests.unit.fakes import FakeS3

pytestmark = pytest.mark.anyio

PART = 5 * MiB
THRESHOLD = 12 * MiB


def storage_for(fake: FakeS3, budget: MemoryBudget | None = None) -> S3Client:
    return S3Client(fake, "b", part_size=PART, multipart_threshold=THRESHOLD, budget=budget)


# --- state ------------------------------------------------------------------------------------


async def test_open_then_closed_then_committed() -> None:
    upload = storage_for(FakeS3()).open_upload("k", "a/b")
    assert upload.state == "open"
    await upload.write(b"x")
    await upload.close()
    assert upload.state == "closed"
    with pytest.raises(RuntimeError, match="closed"):
        await upload.write(b"y")
    await upload.commit()
    assert upload.state == "committed"


async def test_abort_from_open_schedules_one_cleanup() -> None:
    fake = FakeS3()
    upload = storage_for(fake).open_upload("k", "a/b")
    await upload.write(b"x" * (PART + 1))  # a multipart upload is under way
    first = upload.begin_abort()
    assert upload.state == "aborted" and upload.held_bytes == 0
    assert upload.begin_abort() is first
    await upload.abort()
    assert fake.names().count("abort_multipart_upload") == 1
    with pytest.raises(RuntimeError, match="aborted"):
        await upload.write(b"y")


async def test_abort_before_anything_was_sent_calls_nothing() -> None:
    fake = FakeS3()
    upload = storage_for(fake).open_upload("k", "a/b")
    await upload.write(b"x" * 100)
    await upload.abort()
    assert upload.state == "aborted" and fake.names() == []


@pytest.mark.parametrize("size", [100, PART + 1], ids=["put", "multipart"])
async def test_a_committed_object_is_deleted_by_abort(size: int) -> None:
    fake = FakeS3()
    upload = storage_for(fake).open_upload("k", "a/b")
    await upload.write(b"x" * size)
    await upload.commit()
    await upload.abort()
    assert upload.state == "aborted"
    assert fake.names()[-1] == "delete_object" and "k" not in fake.objects


async def test_a_commit_that_failed_before_storing_aborts_the_upload() -> None:
    fake = FakeS3()
    fake.fail = {"complete_multipart_upload": 1}
    upload = storage_for(fake).open_upload("k", "a/b")
    await upload.write(b"x" * (PART + 1))
    with pytest.raises(Exception, match="injected failure"):
        await upload.commit()
    assert upload.state == "closed"
    await upload.abort()
    assert fake.names()[-1] == "abort_multipart_upload"


# --- route ------------------------------------------------------------------------------------


async def test_without_a_hint_one_part_is_held_for_one_put_and_more_goes_multipart() -> None:
    fake = FakeS3()
    upload = storage_for(fake).open_upload("k", "a/b")
    await upload.write(b"x" * PART)
    assert (upload.route, upload.strategy, fake.names()) == ("single_put", "single", [])
    await upload.write(b"x")
    assert upload.route == "multipart" and upload.strategy == "multipart"
    await upload.close()
    assert fake.names() == ["create_multipart_upload", "upload_part", "upload_part"]
    assert [len(fake.parts["k", n]) for n in (1, 2)] == [PART, 1]


async def test_below_the_threshold_the_object_is_held_whole_up_to_the_threshold() -> None:
    fake = FakeS3()
    upload = storage_for(fake).open_upload("k", "a/b", size_hint=THRESHOLD - 1)
    await upload.write(b"x" * THRESHOLD)
    assert upload.route == "single_put" and fake.names() == []
    await upload.write(b"x")  # more than the hint said: the held buffer goes as part 1
    assert upload.route == "multipart"
    await upload.close()
    assert [len(fake.parts["k", n]) for n in (1, 2)] == [THRESHOLD, 1]


async def test_forced_multipart_still_stores_an_empty_object_with_one_put() -> None:
    """A multipart upload needs a part: an empty object goes as one PutObject."""
    fake = FakeS3()
    upload = storage_for(fake).open_upload("k", "a/b", force_multipart=True)
    assert upload.route == "multipart"
    stored = await upload.commit()
    assert fake.names() == ["put_object"] and stored.strategy == "single"
    assert fake.objects["k"] == b""


async def test_forced_multipart_sends_even_one_byte_as_a_part() -> None:
    fake = FakeS3()
    upload = storage_for(fake).open_upload("k", "a/b", force_multipart=True)
    await upload.write(b"x")
    stored = await upload.commit()
    assert fake.names() == [
        "create_multipart_upload",
        "upload_part",
        "complete_multipart_upload",
    ]
    assert (stored.strategy, stored.parts) == ("multipart", 1)


async def test_spill_turns_a_held_object_multipart_only_once_closed() -> None:
    fake = FakeS3()
    upload = storage_for(fake).open_upload("k", "a/b")
    await upload.write(b"x" * 10)
    await upload.spill()  # still open: nothing happens
    assert upload.route == "single_put" and fake.names() == []
    await upload.close()
    await upload.spill()
    assert upload.route == "multipart" and upload.held_bytes == 0
    assert fake.names() == ["create_multipart_upload", "upload_part"]


async def test_a_held_buffer_the_budget_cannot_grow_turns_multipart() -> None:
    fake = FakeS3()
    budget = MemoryBudget(2 * PART)
    upload = storage_for(fake, budget).open_upload("k", "a/b", size_hint=THRESHOLD - 1)
    assert budget.try_acquire(PART // 2)  # someone else holds part of the budget
    await asyncio.wait_for(upload.write(b"x" * (2 * PART)), timeout=5)
    assert upload.route == "multipart"
    assert len(fake.parts["k", 1]) >= PART  # the held buffer went out as the first part
    budget.release(PART // 2)
    await upload.commit()
    assert len(fake.objects["k"]) == 2 * PART
