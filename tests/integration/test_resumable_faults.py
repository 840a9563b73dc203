"""Resumable uploads when the store fails (harness/faulty_s3.py in front of `rclone serve
s3`): the client gets 502, the offset HEAD gives is what reached the bucket, and once the
store is back the upload goes on and ends intact."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable

import httpx
import pytest

from app.settings import RESUMABLE_PREFIX, Settings
from harness.faulty_s3 import Fault, FaultyS3
from harness.store import Bucket
from tests.integration.conftest import PART, app_client, assert_error

pytestmark = [pytest.mark.anyio, pytest.mark.rclone, pytest.mark.faulty_proxy]

TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = {"Content-Type": "application/offset+octet-stream"}
DATA = os.urandom(4 * PART + 1000)


async def create(http: httpx.AsyncClient) -> str:
    response = await http.post("/files/", headers={**TUS, "Upload-Length": str(len(DATA))})
    assert response.status_code == 201, response.text
    return str(response.headers["location"])


async def append(http: httpx.AsyncClient, url: str, offset: int) -> httpx.Response:
    return await http.patch(
        url, content=DATA[offset:], headers={**TUS, **OCTETS, "Upload-Offset": str(offset)}
    )


def stored_object(bucket: Bucket) -> str:
    stored = bucket.keys()
    (key,) = [k for k in stored if not k.startswith(RESUMABLE_PREFIX)]
    return key


async def test_a_failed_part_keeps_the_parts_before_it(
    settings_for: Callable[..., Settings], bucket: Bucket, proxy: FaultyS3
) -> None:
    async with app_client(settings_for(s3_max_attempts=1)) as http:
        url = await create(http)
        proxy.faults = [Fault("UploadPart", first=2, last=None, kind="internal")]
        assert_error(await append(http, url, 0), 502, "storage_error")
        head = await http.head(url, headers=TUS)
        assert head.status_code == 200
        assert head.headers["upload-offset"] == str(PART)  # part 1 reached the bucket
        proxy.faults = []
        response = await append(http, url, PART)
        assert response.status_code == 204, response.text
    assert bucket.sha256(stored_object(bucket)) == hashlib.sha256(DATA).hexdigest()
    assert bucket.incomplete_uploads() == []


async def test_a_failed_completion_is_finished_by_the_next_head(
    settings_for: Callable[..., Settings], bucket: Bucket, proxy: FaultyS3
) -> None:
    async with app_client(settings_for(s3_max_attempts=1)) as http:
        url = await create(http)
        proxy.faults = [Fault("CompleteMultipartUpload", first=1, last=None, kind="internal")]
        assert_error(await append(http, url, 0), 502, "storage_error")
        # Every byte is in, but no object: HEAD must not say offset == length yet.
        head = await http.head(url, headers=TUS)
        assert head.status_code == 502
        proxy.faults = []
        head = await http.head(url, headers=TUS)
        assert head.status_code == 200
        assert head.headers["upload-offset"] == str(len(DATA))
    assert bucket.sha256(stored_object(bucket)) == hashlib.sha256(DATA).hexdigest()
    assert bucket.incomplete_uploads() == []


async def test_a_failed_tail_write_keeps_the_parts_and_the_old_offset_beyond_them(
    settings_for: Callable[..., Settings], bucket: Bucket, proxy: FaultyS3
) -> None:
    async with app_client(settings_for(s3_max_attempts=1)) as http:
        url = await create(http)
        short = PART + 1234  # a part, and a tail to store
        # The next PutObject takes the lease (state.json), the one after is the tail: only
        # the tail's fails, and its one retry (botocore's max_attempts counts retries).
        tail = proxy.counts.get("PutObject", 0) + 2
        proxy.faults = [Fault("PutObject", first=tail, last=tail + 1, kind="internal")]
        response = await http.patch(
            url, content=DATA[:short], headers={**TUS, **OCTETS, "Upload-Offset": "0"}
        )
        proxy.faults = []
        assert_error(response, 502, "storage_error")
        head = await http.head(url, headers=TUS)
        assert head.headers["upload-offset"] == str(PART)
        assert (await append(http, url, PART)).status_code == 204
    assert bucket.sha256(stored_object(bucket)) == hashlib.sha256(DATA).hexdigest()


@pytest.mark.usefixtures("proxy")
async def test_rclone_refuses_to_rewrite_a_part_a_discarded_append_wrote(
    settings_for: Callable[..., Settings], bucket: Bucket
) -> None:
    """A limit of `rclone serve s3` (docs/resumable.md, Several instances): a part cannot be
    written again with other bytes. An append damaged in transit whose bytes filled a part is
    discarded (460), and its retry fails on that part with a clear 502; the upload is given
    up with DELETE, which leaves nothing."""
    data = os.urandom(3 * PART + 1)
    async with app_client(settings_for()) as http:
        response = await http.post("/files/", headers={**TUS, "Upload-Length": str(len(data))})
        url = response.headers["location"]
        body = data[: 3 * PART]
        checksum = "sha1 " + base64.b64encode(hashlib.sha1(body).digest()).decode()
        damaged = bytearray(body)
        damaged[100] ^= 1
        headers = {**TUS, **OCTETS, "Upload-Offset": "0", "Upload-Checksum": checksum}
        assert_error(
            await http.patch(url, content=bytes(damaged), headers=headers), 460, "checksum_mismatch"
        )
        response = await http.patch(url, content=body, headers=headers)
        assert_error(response, 502, "storage_error")
        assert "cannot be replaced" in response.json()["error"]["message"]
        assert (await http.delete(url, headers=TUS)).status_code == 204
    bucket.assert_clean()
