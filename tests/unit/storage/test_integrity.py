"""Per-part integrity checks and answer verification, per provider profile
(app/storage/providers.py).

The recording fake verifies Content-MD5 like a real store and answers MD5 ETags (and echoes
CRC32 checksums); `wrong_etag` / `wrong_checksum` make it answer like a store that kept other
bytes, which no real server does on demand.
"""

from __future__ import annotations

import base64
import hashlib
import random

import pytest

from app.errors import IntegrityFailed
from app.storage.buffers import PartBuffer
from app.storage.client import S3Client
from app.storage.integrity import UploadIntegrity
from app.storage.providers import PROFILES
from app.units import MiB
from tests.unit.fakes import FakeS3

pytestmark = pytest.mark.anyio

PART = 5 * MiB


def storage_for(fake: FakeS3, provider: str) -> S3Client:
    return S3Client(
        fake, "b", part_size=PART, multipart_threshold=3 * PART, provider=PROFILES[provider]
    )


DATA = random.Random(3).randbytes(2 * PART + 1234)  # three parts


def b64md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


async def store(storage: S3Client, data: bytes = DATA, hint: int | None = None) -> None:
    upload = storage.open_upload("k", "a/b", size_hint=hint)
    try:
        await upload.write(data)
        await upload.commit()
    except BaseException:
        await upload.abort()
        raise


async def test_generic_sends_content_md5_with_every_part_and_checks_etags() -> None:
    fake = FakeS3()
    await store(storage_for(fake, "generic"))
    parts = [kwargs for name, kwargs in fake.calls if name == "upload_part"]
    assert [p["ContentMD5"] for p in parts] == [b64md5(p["Body"]) for p in parts]
    assert "ChecksumAlgorithm" not in fake.calls[0][1]
    assert fake.objects["k"] == DATA


async def test_single_put_sends_content_md5() -> None:
    fake = FakeS3()
    await store(storage_for(fake, "generic"), DATA, hint=len(DATA))
    assert fake.names() == ["put_object"]
    assert fake.calls[0][1]["ContentMD5"] == b64md5(DATA)


@pytest.mark.parametrize(
    ("wrong", "undo"),
    [
        ("upload_part", "abort_multipart_upload"),
        ("complete_multipart_upload", "delete_object"),
        ("put_object", "delete_object"),
    ],
)
async def test_an_etag_that_is_not_the_md5_sent_fails_and_undoes(wrong: str, undo: str) -> None:
    fake = FakeS3()
    fake.wrong_etag = {wrong}
    storage = storage_for(fake, "generic")
    with pytest.raises(IntegrityFailed) as caught:
        await store(storage, hint=len(DATA) if wrong == "put_object" else None)
    await storage.wait_for_cleanups(grace=5)
    assert caught.value.status_code == 502 and caught.value.code == "integrity_error"
    assert fake.names()[-1] == undo
    assert "k" not in fake.objects


@pytest.mark.parametrize("provider", ["b2", "r2"])
async def test_stores_whose_etags_are_not_md5_are_not_judged_by_them(provider: str) -> None:
    fake = FakeS3()
    fake.wrong_etag = {"upload_part", "complete_multipart_upload"}
    await store(storage_for(fake, provider))
    assert fake.objects["k"] == DATA
    assert all("ContentMD5" in kw for name, kw in fake.calls if name == "upload_part")


@pytest.mark.parametrize("hint", [None, len(DATA)], ids=["multipart", "put_object"])
async def test_local_sends_no_checksum_computes_no_md5_and_judges_no_answer(
    monkeypatch: pytest.MonkeyPatch, hint: int | None
) -> None:
    """S3_PROVIDER=local: no Content-MD5, no x-amz-checksum-*, and answers whose ETags and
    checksums say other bytes are not held against the upload (there is nothing to check
    them against). PartBuffer.digest is replaced by a failure to show no digest is computed."""

    async def no_digest(self: PartBuffer, work: object) -> bytes:
        raise AssertionError("the local profile computed a digest")

    monkeypatch.setattr(PartBuffer, "digest", no_digest)
    fake = FakeS3()
    fake.wrong_etag = {"upload_part", "complete_multipart_upload", "put_object"}
    fake.wrong_checksum = {"complete_multipart_upload"}
    await store(storage_for(fake, "local"), DATA, hint=hint)
    assert fake.objects["k"] == DATA
    parts = ["upload_part"] * 3
    multipart = ["create_multipart_upload", *parts, "complete_multipart_upload"]
    assert fake.names() == (["put_object"] if hint else multipart)
    for _, kwargs in fake.calls:
        assert not {k for k in kwargs if k == "ContentMD5" or k.startswith("Checksum")}
    if not hint:
        listed = fake.calls[-1][1]["MultipartUpload"]["Parts"]
        assert [sorted(p) for p in listed] == [["ETag", "PartNumber"]] * 3


@pytest.mark.parametrize("provider", ["aws", "minio"])
async def test_crc32_providers_ask_for_checksums_and_send_them_back(provider: str) -> None:
    fake = FakeS3()
    await store(storage_for(fake, provider))
    create, *parts, complete = fake.calls
    assert create[1]["ChecksumAlgorithm"] == "CRC32"
    assert all(kw["ChecksumAlgorithm"] == "CRC32" and "ContentMD5" not in kw for _, kw in parts)
    assert all("ChecksumCRC32" in p for p in complete[1]["MultipartUpload"]["Parts"])
    assert fake.objects["k"] == DATA


async def test_a_composite_checksum_that_does_not_match_the_parts_fails() -> None:
    fake = FakeS3()
    fake.wrong_checksum = {"complete_multipart_upload"}
    storage = storage_for(fake, "aws")
    with pytest.raises(IntegrityFailed):
        await store(storage)
    await storage.wait_for_cleanups(grace=5)
    assert fake.names()[-1] == "delete_object" and "k" not in fake.objects


async def test_equal_part_stores_never_hold_more_than_a_part_for_one_put() -> None:
    """R2: below the threshold a file would be held for one PutObject; past one part it must
    become a multipart upload of equal parts, never one that starts with a bigger part."""
    fake = FakeS3()
    await store(storage_for(fake, "r2"), DATA, hint=len(DATA))
    sizes = [len(kw["Body"]) for name, kw in fake.calls if name == "upload_part"]
    assert sizes == [PART, PART, len(DATA) - 2 * PART]


async def test_max_parts_from_the_provider_grows_the_part_size() -> None:
    fake = FakeS3()
    profile = PROFILES["generic"].__class__(
        "generic", part_checksum="md5", etags_are_md5=True, equal_parts=False, max_parts=2
    )
    storage = S3Client(fake, "b", part_size=PART, multipart_threshold=PART, provider=profile)
    upload = storage.open_upload("k", "a/b", size_hint=4 * PART)
    assert upload.part_size == 2 * PART


def test_a_store_that_does_not_echo_crc32_is_warned_about_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    integrity = UploadIntegrity(PROFILES["aws"], "k")
    for number in (1, 2):
        integrity.check_part(number, {"ETag": '"x"'}, None)
    warned = [r for r in caplog.records if "did not confirm the CRC32 of k" in r.getMessage()]
    assert len(warned) == 1
    assert integrity.completion_fields(1) == {}  # nothing confirmed: nothing to list


def test_each_profile_asks_for_its_own_check() -> None:
    assert UploadIntegrity(PROFILES["aws"], "k").create_arguments() == {
        "ChecksumAlgorithm": "CRC32"
    }
    assert UploadIntegrity(PROFILES["b2"], "k").create_arguments() == {}
    assert UploadIntegrity(PROFILES["local"], "k").create_arguments() == {}
