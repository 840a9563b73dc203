"""One multipart upload's calls against the recording fake: their order and arguments."""

from __future__ import annotations

import asyncio
import logging

import pytest

from app.errors import StorageFailed
from app.storage.buffers import PartBuffer
from app.storage.client import S3Client
from app.storage.integrity import UploadIntegrity
from app.storage.multipart import MultipartUpload
from app.storage.providers import PROFILES
from tests.unit.fakes import FakeS3, composite_crc32c, crc32c_b64, md5_etag

pytestmark = pytest.mark.anyio

PART = 5 * 1024 * 1024


def part(data: bytes) -> PartBuffer:
    buffer = PartBuffer()
    buffer.reserved = len(data)
    buffer.append(data)
    return buffer


async def started(fake: FakeS3, provider: str, parts_in_flight: int = 2) -> MultipartUpload:
    storage = S3Client(
        fake,
        "bucket",
        part_size=PART,
        multipart_threshold=PART,
        parts_in_flight=parts_in_flight,
        provider=PROFILES[provider],
    )
    integrity = UploadIntegrity(storage.provider, "k")
    return await MultipartUpload.create(
        storage, "k", integrity, content_type="a/b", metadata={"Metadata": {"name": "x"}}
    )


async def test_create_then_parts_then_complete_with_every_part_in_order() -> None:
    fake = FakeS3()
    fake.delays = {1: 0.03}  # part 1 ends after part 2
    upload = await started(fake, "generic")
    await upload.send(part(b"first"))
    await upload.send(part(b"second"))
    await upload.wait()
    assert upload.part_count == 2
    await upload.complete({"IfNoneMatch": "*"})

    assert fake.names() == [
        "create_multipart_upload",
        "upload_part",
        "upload_part",
        "complete_multipart_upload",
    ]
    assert fake.calls[0][1] == {
        "Bucket": "bucket",
        "Key": "k",
        "ContentType": "a/b",
        "Metadata": {"name": "x"},
    }
    # The parts may reach the store in either order (each MD5 runs in a thread); the
    # completion lists them in order.
    assert sorted(kw["PartNumber"] for _, kw in fake.calls[1:3]) == [1, 2]
    assert all(kw["UploadId"] == "upload-1" and "ContentMD5" in kw for _, kw in fake.calls[1:3])
    complete = fake.calls[-1][1]
    assert complete["IfNoneMatch"] == "*" and complete["UploadId"] == "upload-1"
    assert complete["MultipartUpload"] == {
        "Parts": [
            {"ETag": md5_etag(b"first"), "PartNumber": 1},
            {"ETag": md5_etag(b"second"), "PartNumber": 2},
        ]
    }
    assert fake.objects["k"] == b"firstsecond"


@pytest.mark.parametrize("provider", ["aws", "minio"])
async def test_crc32c_profiles_ask_for_it_and_list_each_part_checksum(provider: str) -> None:
    fake = FakeS3()
    upload = await started(fake, provider)
    await upload.send(part(b"first"))
    await upload.send(part(b"second"))
    await upload.wait()
    answer = await upload.complete({})
    assert fake.calls[0][1]["ChecksumAlgorithm"] == "CRC32C"
    sent = [kw for name, kw in fake.calls if name == "upload_part"]
    assert sorted((kw["PartNumber"], kw["ChecksumCRC32C"]) for kw in sent) == [
        (1, crc32c_b64(b"first")),
        (2, crc32c_b64(b"second")),
    ]
    assert all("ContentMD5" not in kw and "ChecksumAlgorithm" not in kw for kw in sent)
    assert fake.calls[-1][1]["MultipartUpload"]["Parts"] == [
        {"ETag": md5_etag(b"first"), "PartNumber": 1, "ChecksumCRC32C": crc32c_b64(b"first")},
        {"ETag": md5_etag(b"second"), "PartNumber": 2, "ChecksumCRC32C": crc32c_b64(b"second")},
    ]
    assert answer["ChecksumCRC32C"] == composite_crc32c([b"first", b"second"])


async def test_a_failed_part_is_raised_by_wait() -> None:
    fake = FakeS3()
    fake.fail = {"upload_part": 1}
    upload = await started(fake, "generic")
    await upload.send(part(b"x"))
    with pytest.raises(StorageFailed, match="UploadPart"):
        await upload.wait()
    assert upload.part_count == 0


async def test_abort_stops_the_parts_and_aborts_the_upload(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeS3()
    fake.gate = asyncio.Event()  # parts hang until cancelled
    upload = await started(fake, "generic")
    await upload.send(part(b"x"))
    await fake.part_started.wait()
    caplog.set_level(logging.INFO)
    await upload.stop_parts()
    await upload.abort()
    assert fake.names() == ["create_multipart_upload", "upload_part", "abort_multipart_upload"]
    assert fake.calls[-1][1] == {"Bucket": "bucket", "Key": "k", "UploadId": "upload-1"}
    assert "aborted multipart upload upload-1 of k" in caplog.text
