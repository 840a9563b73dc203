"""What goes over the wire to a real store for integrity: checksums and payload signing.

The requests are seen by harness/faulty_s3.py's proxy (forwarding untouched) in front of
`rclone serve s3`, which verifies Content-MD5 and answers MD5 ETags, but ignores flexible
checksums (x-amz-checksum-*): for the CRC32C profiles these tests check what is sent, and
stores that verify it (moto does not either) are left to the unit tests' fake and to
tests/integration/test_storage_faults.py's refusals.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import random
import re
from collections.abc import Callable

import google_crc32c
import pytest

from app.settings import Settings
from harness.faulty_s3 import FaultyS3
from harness.forms import FilePart, chunked, content_type, multipart_body
from harness.store import Bucket
from tests.integration.conftest import PART, app_client

pytestmark = [pytest.mark.anyio, pytest.mark.rclone, pytest.mark.faulty_proxy]

DATA = random.Random(11).randbytes(2 * PART + 999)


@pytest.mark.parametrize("signing", ["auto", "off"])
async def test_each_part_carries_its_content_md5_and_payload_signing_follows_the_setting(
    settings_for: Callable[..., Settings], bucket: Bucket, proxy: FaultyS3, signing: str
) -> None:
    body = multipart_body([FilePart("f", "a.bin", DATA)])
    async with app_client(settings_for(s3_payload_signing=signing)) as http:
        response = await http.post(
            "/uploads", content=chunked(body), headers={"content-type": content_type()}
        )
    assert response.status_code == 201, response.text
    bucket.assert_intact(response.json()["files"][0], DATA)
    parts = [headers for name, headers in proxy.requests if name == "UploadPart"]
    assert len(parts) == 3
    sizes = [PART, PART, len(DATA) - 2 * PART]
    pieces = [DATA[:PART], DATA[PART : 2 * PART], DATA[2 * PART :]]
    for headers, piece, size in zip(parts, pieces, sizes, strict=True):
        assert int(headers["content-length"]) == size
        assert headers["content-md5"] == base64.b64encode(hashlib.md5(piece).digest()).decode()
        signed = headers["x-amz-content-sha256"]
        if signing == "off":
            assert signed == "UNSIGNED-PAYLOAD"
        else:  # over http:// botocore signs the payload: its SHA-256 is in the signature
            assert re.fullmatch("[0-9a-f]{64}", signed)
            assert signed == hashlib.sha256(piece).hexdigest()


async def store_small_and_large(settings: Settings, bucket: Bucket) -> None:
    """Upload 1000 bytes (one PutObject) and DATA (three parts); both read back intact."""
    small = DATA[:1000]
    async with app_client(settings) as http:
        for data in (small, DATA):
            body = multipart_body([FilePart("f", "a.bin", data)])
            response = await http.post(
                "/uploads", content=chunked(body), headers={"content-type": content_type()}
            )
            assert response.status_code == 201, response.text
            stored = response.json()["files"][0]
            assert stored["parts"] == (1 if data is small else 3)
            bucket.assert_intact(stored, data)


@pytest.mark.parametrize("provider", ["aws", "minio", "b2", "r2"])
async def test_every_provider_profile_stores_intact_on_a_real_server(
    settings_for: Callable[..., Settings], s3_endpoint: str, provider: str
) -> None:
    """Each profile's calls (CRC32C flexible checksums, or Content-MD5; R2's equal parts)
    are accepted by a real S3 API (moto), as a single PutObject and as a multipart upload."""
    moto_bucket = Bucket(s3_endpoint)
    settings = settings_for(s3_provider=provider, s3_endpoint_url=s3_endpoint)
    settings = dataclasses.replace(settings, s3_bucket=moto_bucket.name)
    await store_small_and_large(settings, moto_bucket)


async def test_local_profile_sends_no_digest_and_stores_intact_on_rclone(
    settings_for: Callable[..., Settings], bucket: Bucket, proxy: FaultyS3
) -> None:
    """S3_PROVIDER=local, as `python -m app serve` runs its embedded store: neither a
    multipart upload nor a single PutObject carries Content-MD5 or x-amz-checksum-*, and
    the bytes read back from rclone are the ones sent (the answer's sha256 included)."""
    await store_small_and_large(settings_for(s3_provider="local", s3_payload_signing="off"), bucket)
    sent = [(name, h) for name, h in proxy.requests if name in ("PutObject", "UploadPart")]
    assert [name for name, _ in sent] == ["PutObject", "UploadPart", "UploadPart", "UploadPart"]
    for _, headers in sent:
        assert "content-md5" not in headers
        assert not [h for h in headers if h.startswith("x-amz-checksum") or h == "x-amz-trailer"]


def crc32c_b64(data: bytes) -> str:
    return base64.b64encode(google_crc32c.value(data).to_bytes(4, "big")).decode()


@pytest.mark.parametrize("provider", ["aws", "minio"])
async def test_crc32c_profiles_send_each_parts_crc32c_as_a_header_and_nothing_else(
    settings_for: Callable[..., Settings], bucket: Bucket, proxy: FaultyS3, provider: str
) -> None:
    """S3_PROVIDER=aws or minio: every UploadPart and the single PutObject carries the CRC32C
    of exactly its bytes (computed here by google-crc32c) as x-amz-checksum-crc32c, and
    botocore adds no checksum of its own: no Content-MD5, no CRC32, no aws-chunked trailer.
    rclone does not verify the header: this checks what is sent, and that the object is
    intact."""
    await store_small_and_large(settings_for(s3_provider=provider), bucket)
    pieces = {"1": DATA[:PART], "2": DATA[PART : 2 * PART], "3": DATA[2 * PART :]}
    sent = [
        (name, headers, query)
        for (name, headers), query in zip(proxy.requests, proxy.queries, strict=True)
        if name in ("PutObject", "UploadPart")
    ]
    assert [name for name, _, _ in sent] == ["PutObject", "UploadPart", "UploadPart", "UploadPart"]
    assert sorted(query.get("partNumber", "") for _, _, query in sent) == ["", "1", "2", "3"]
    for name, headers, query in sent:
        data = DATA[:1000] if name == "PutObject" else pieces[query["partNumber"]]
        assert int(headers["content-length"]) == len(data)
        assert headers["x-amz-checksum-crc32c"] == crc32c_b64(data)
        assert [h for h in headers if h.startswith("x-amz-checksum")] == ["x-amz-checksum-crc32c"]
        assert headers.get("x-amz-sdk-checksum-algorithm", "CRC32C") == "CRC32C"
        assert "content-md5" not in headers and "x-amz-trailer" not in headers
        assert "aws-chunked" not in headers.get("content-encoding", "")
    creates = [h for name, h in proxy.requests if name == "CreateMultipartUpload"]
    assert [h.get("x-amz-checksum-algorithm") for h in creates] == ["CRC32C"]
