"""Storage misbehaves mid-upload: transient faults are retried and the object is intact;
persistent ones end in 502 with the multipart upload aborted.

Faults come from harness/faulty_s3.py, a proxy in front of a real `rclone serve s3`: the only
way to make a real server fail a chosen call on demand.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from app.settings import Settings
from harness.faulty_s3 import Fault, FaultyS3
from harness.store import Bucket
from tests.integration.conftest import PART, app_client, assert_error, post_chunked

pytestmark = [pytest.mark.anyio, pytest.mark.rclone, pytest.mark.faulty_proxy]

DATA = bytes(range(256)) * (3 * PART // 256) + b"tail"  # 3 parts and a bit: 4 parts


@pytest.mark.parametrize(
    "fault",
    [
        Fault("UploadPart", first=2, last=2, kind="slowdown"),
        Fault("UploadPart", first=1, last=2, kind="internal"),
        Fault("UploadPart", first=3, last=3, kind="drop"),
        Fault("CreateMultipartUpload", kind="slowdown"),
        Fault("CompleteMultipartUpload", kind="internal"),
    ],
    ids=lambda f: f"{f.operation}-{f.kind}-{f.first}-{f.last}",
)
async def test_transient_fault_is_retried_and_the_object_is_intact(
    settings_for: Callable[..., Settings], bucket: Bucket, proxy: FaultyS3, fault: Fault
) -> None:
    proxy.faults = [fault]
    async with app_client(settings_for(s3_max_attempts=3)) as http:
        response = await post_chunked(http, DATA)
    assert response.status_code == 201, response.text
    stored = response.json()["files"][0]
    assert (stored["strategy"], stored["parts"]) == ("multipart", 4)
    bucket.assert_intact(stored, DATA)
    assert proxy.broken  # the fault really happened


async def test_transient_fault_on_a_single_put_is_retried(
    settings_for: Callable[..., Settings], bucket: Bucket, proxy: FaultyS3
) -> None:
    proxy.faults = [Fault("PutObject", kind="slowdown")]
    async with app_client(settings_for(s3_max_attempts=3)) as http:
        response = await post_chunked(http, b"small file")
    assert response.status_code == 201, response.text
    bucket.assert_intact(response.json()["files"][0], b"small file")
    assert proxy.broken == [("PutObject", 1, "slowdown")]


@pytest.mark.parametrize("operation", ["UploadPart", "CompleteMultipartUpload"])
async def test_persistent_failure_is_502_and_aborted(
    settings_for: Callable[..., Settings], bucket: Bucket, proxy: FaultyS3, operation: str
) -> None:
    proxy.faults = [Fault(operation, first=1, last=None, kind="internal")]
    async with app_client(settings_for(s3_max_attempts=3)) as http:
        response = await post_chunked(http, DATA)
        assert response.status_code == 502, response.text
        assert response.json()["error"]["code"] == "storage_error"
        assert proxy.counts.get("AbortMultipartUpload") == 1
        bucket.assert_clean()
        proxy.faults = []
        response = await post_chunked(http, DATA)  # alive: the next upload goes through
    assert response.status_code == 201
    bucket.assert_intact(response.json()["files"][0], DATA)


@pytest.mark.parametrize(
    ("operation", "size"),
    [("UploadPart", len(DATA)), ("CompleteMultipartUpload", len(DATA)), ("PutObject", 1000)],
)
@pytest.mark.parametrize(
    ("provider", "kind", "check"),
    [("generic", "wrong_etag", "ETag"), ("aws", "wrong_checksum", "CRC32C")],
)
async def test_an_answer_not_matching_the_bytes_sent_is_502_and_nothing_is_kept(
    settings_for: Callable[..., Settings],
    bucket: Bucket,
    proxy: FaultyS3,
    operation: str,
    size: int,
    provider: str,
    kind: str,
    check: str,
) -> None:
    """A store that kept other bytes than it was sent: under `generic` the answered ETags
    (the part's MD5; the MD5 of the parts' MD5s for the whole object) do not match, under
    `aws` the echoed CRC32C (or the object's composite) does not. 502, and the upload is
    aborted or the completed object deleted; the next upload goes through."""
    proxy.faults = [Fault(operation, first=1, last=None, kind=kind)]
    async with app_client(settings_for(s3_provider=provider)) as http:
        response = await post_chunked(http, DATA[:size])
        assert_error(response, 502, "integrity_error")
        assert check in response.json()["error"]["message"]
        assert proxy.broken and proxy.broken[0][0] == operation
        assert bucket.incomplete_uploads() == []
        assert bucket.keys() == []
        proxy.faults = []
        response = await post_chunked(http, DATA)
    assert response.status_code == 201
    bucket.assert_intact(response.json()["files"][0], DATA)


async def test_a_part_refused_with_bad_digest_is_502_not_retried_and_nothing_is_kept(
    settings_for: Callable[..., Settings], bucket: Bucket, proxy: FaultyS3
) -> None:
    """S3_PROVIDER=aws: a store that finds a part's CRC32C wrong answers 400 BadDigest. That
    is not transient (botocore retries no 400): the upload ends in 502 and is aborted. A
    retry would have been forwarded, and stored the object."""
    proxy.faults = [Fault("UploadPart", first=2, last=2, kind="bad_digest")]
    async with app_client(settings_for(s3_provider="aws", s3_max_attempts=3)) as http:
        response = await post_chunked(http, DATA)
    assert_error(response, 502, "storage_error")
    assert "BadDigest" in response.json()["error"]["message"]
    assert proxy.broken == [("UploadPart", 2, "bad_digest")]
    calls = zip(proxy.requests, proxy.queries, strict=True)
    parts = [query["partNumber"] for (name, _), query in calls if name == "UploadPart"]
    assert parts.count(parts[1]) == 1  # the refused part was sent once, never again
    assert proxy.counts.get("AbortMultipartUpload") == 1
    assert bucket.incomplete_uploads() == []
    assert bucket.keys() == []


async def test_small_bodies_go_without_waiting_for_100_continue(
    settings_for: Callable[..., Settings], bucket: Bucket, proxy: FaultyS3
) -> None:
    """botocore asks `Expect: 100-continue` for every file-like body, and aiohttp then waits
    for the store's 100 before sending it: for a small PutObject, now and then forever on a
    reused connection (a hook event's record stuck while 100 uploads went to `rclone serve
    s3`). Small bodies go at once; parts still wait for the store to take them, which keeps
    them out of the socket's send buffer (test_memory_budget.py measures that)."""
    async with app_client(settings_for()) as http:
        small = await post_chunked(http, b"small file")
        large = await post_chunked(http, DATA)
    assert (small.status_code, large.status_code) == (201, 201)
    bucket.assert_intact(small.json()["files"][0], b"small file")
    bucket.assert_intact(large.json()["files"][0], DATA)
    puts = [headers for name, headers in proxy.requests if name == "PutObject"]
    parts = [headers for name, headers in proxy.requests if name == "UploadPart"]
    assert puts and all("expect" not in headers for headers in puts)
    # Parts 1 to 3 (5 MiB) wait for the store; the last, 4 bytes, goes at once.
    assert [h.get("expect") for h in parts] == ["100-continue"] * 3 + [None]
