"""S3Client: the upload policy, call() and its error mapping, cleanups that outlive a request.

Refusals are injected by a method that raises what botocore raises (a ClientError with the
store's error code): the recording fake does not refuse on conditions.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from botocore.exceptions import ClientError

from app.errors import KeyExists, StorageFailed
from app.storage.client import S3Client
from app.storage.providers import PROFILES
from app.units import MiB
from tests.unit.fakes import FakeS3

pytestmark = pytest.mark.anyio

PART = 5 * MiB
THRESHOLD = 12 * MiB


def storage_for(fake: FakeS3, provider: str = "generic") -> S3Client:
    return S3Client(
        fake, "bucket", part_size=PART, multipart_threshold=THRESHOLD, provider=PROFILES[provider]
    )


def refusing(code: str) -> Any:
    async def method(**kwargs: Any) -> dict[str, Any]:
        raise ClientError({"Error": {"Code": code, "Message": "refused"}}, "PutObject")

    return method


@pytest.mark.parametrize(
    ("hint", "force", "provider", "route"),
    [
        (THRESHOLD - 1, False, "generic", "single_put"),  # below the threshold: held whole
        (None, False, "generic", "multipart"),  # unknown size: held for one part only
        (THRESHOLD, False, "generic", "multipart"),  # at the threshold: the same
        (THRESHOLD - 1, False, "r2", "multipart"),  # equal parts: never held past one part
        (THRESHOLD - 1, True, "generic", "multipart"),
    ],
)
async def test_open_upload_holds_an_object_for_one_put_by_size_hint_and_provider(
    hint: int | None, force: bool, provider: str, route: str
) -> None:
    upload = storage_for(FakeS3(), provider).open_upload(
        "k", "a/b", size_hint=hint, force_multipart=force
    )
    assert upload.route == ("multipart" if force else "single_put")
    await upload.write(b"x" * (THRESHOLD - 1))
    assert upload.route == route
    await upload.abort()


async def test_call_passes_the_bucket_and_returns_the_answer() -> None:
    fake = FakeS3()
    answer = await storage_for(fake).call("HeadBucket", fake.head_bucket)
    assert answer == {} and fake.calls == [("head_bucket", {"Bucket": "bucket"})]


async def test_any_failure_becomes_storage_failed_naming_the_operation() -> None:
    fake = FakeS3()
    fake.fail = {"delete_object": 1}
    with pytest.raises(StorageFailed, match="storage DeleteObject failed: injected failure"):
        await storage_for(fake).delete("k")


@pytest.mark.parametrize("code", ["PreconditionFailed", "ConditionalRequestConflict"])
async def test_a_refused_if_none_match_means_the_key_exists(code: str) -> None:
    storage = storage_for(FakeS3())
    with pytest.raises(KeyExists, match="'k' exists"):
        await storage.call("PutObject", refusing(code), Key="k", IfNoneMatch="*")


async def test_the_same_code_without_if_none_match_is_a_storage_failure() -> None:
    storage = storage_for(FakeS3())
    with pytest.raises(StorageFailed, match="PreconditionFailed: refused") as caught:
        await storage.call("PutObject", refusing("PreconditionFailed"), Key="k")
    assert not isinstance(caught.value, KeyExists)


async def test_upload_stores_a_buffer_with_one_put() -> None:
    fake = FakeS3()
    stored = await storage_for(fake).upload(b"abc", "k", "text/plain")
    assert fake.names() == ["put_object"] and fake.objects["k"] == b"abc"
    assert (stored.strategy, stored.parts, stored.size) == ("single", 1, 3)


async def test_a_cleanup_runs_to_its_end_though_its_caller_is_cancelled() -> None:
    fake = FakeS3()
    storage = storage_for(fake)
    release = asyncio.Event()

    async def cleanup() -> None:
        await release.wait()
        await storage.delete("k")

    async def caller() -> None:
        await asyncio.shield(storage.run_cleanup(cleanup()))

    task = asyncio.ensure_future(caller())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    release.set()
    await storage.wait_for_cleanups(grace=5)
    assert fake.names() == ["delete_object"]
