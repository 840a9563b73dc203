"""Per-part integrity checks and answer verification, per provider profile
(app/storage/providers.py).

The recording fake verifies Content-MD5 and CRC32C like a real store, answers MD5 ETags and
echoes CRC32C checksums (its own composite for the object); `wrong_etag` / `wrong_checksum`
make it answer like a store that kept other bytes, which no real server does on demand. Its
CRC32Cs come from google-crc32c, not the service's awscrt, so each checks the other.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import random

import google_crc32c
import pytest

from app.errors import IntegrityFailed
from app.storage.buffers import PartBuffer
from app.storage.client import S3Client
from app.storage.integrity import UploadIntegrity, crc32c_of
from app.storage.providers import PROFILES
from app.units import MiB
from tests.unit.fakes import FakeS3, composite_crc32c, crc32c_b64

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


def crc32c_bitwise(data: bytes) -> int:
    """CRC32C from its definition (reflected polynomial 0x82F63B78), bit by bit: slow, but
    shares nothing with either library."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def test_the_crc32c_sent_is_the_castagnoli_crc_of_the_bytes() -> None:
    """The known answer of CRC32C (and of google-crc32c, which the fake store and the
    integration tests check against), and the bitwise definition over views of odd sizes
    and offsets, both sides of awscrt's 5 KiB threshold for releasing the GIL."""
    assert crc32c_of(memoryview(b"123456789")) == (0xE3069283).to_bytes(4, "big")
    assert google_crc32c.value(b"123456789") == 0xE3069283
    data = random.Random(5).randbytes(6000)
    for start, end in [(0, 0), (0, 1), (3, 10), (1, 300), (7, 5127), (0, 6000)]:
        view = memoryview(data)[start:end]
        assert crc32c_of(view) == crc32c_bitwise(data[start:end]).to_bytes(4, "big")


@pytest.mark.parametrize("provider", ["aws", "minio"])
async def test_crc32c_providers_send_each_parts_crc32c_and_list_them_at_completion(
    provider: str,
) -> None:
    fake = FakeS3()
    await store(storage_for(fake, provider))
    create, *parts, complete = fake.calls
    assert create[1]["ChecksumAlgorithm"] == "CRC32C"
    assert [name for name, _ in parts] == ["upload_part"] * 3
    for _, kwargs in parts:
        assert kwargs["ChecksumCRC32C"] == crc32c_b64(kwargs["Body"])
        assert "ContentMD5" not in kwargs and "ChecksumAlgorithm" not in kwargs
    by_number = {kw["PartNumber"]: kw["ChecksumCRC32C"] for _, kw in parts}
    listed = complete[1]["MultipartUpload"]["Parts"]
    assert [(p["PartNumber"], p["ChecksumCRC32C"]) for p in listed] == sorted(by_number.items())
    assert fake.objects["k"] == DATA


async def test_a_single_put_sends_the_crc32c_of_the_object() -> None:
    fake = FakeS3()
    await store(storage_for(fake, "aws"), DATA, hint=len(DATA))
    assert fake.names() == ["put_object"]
    sent = fake.calls[0][1]
    assert sent["ChecksumCRC32C"] == crc32c_b64(DATA) and "ContentMD5" not in sent


@pytest.mark.parametrize(
    ("wrong", "undo"),
    [
        ("upload_part", "abort_multipart_upload"),
        ("complete_multipart_upload", "delete_object"),
        ("put_object", "delete_object"),
    ],
)
async def test_a_crc32c_answered_that_is_not_the_one_sent_fails_and_undoes(
    wrong: str, undo: str
) -> None:
    """A part's echoed CRC32C, or the object's composite, says the store kept other bytes."""
    fake = FakeS3()
    fake.wrong_checksum = {wrong}
    storage = storage_for(fake, "aws")
    with pytest.raises(IntegrityFailed, match="CRC32C") as caught:
        await store(storage, hint=len(DATA) if wrong == "put_object" else None)
    await storage.wait_for_cleanups(grace=5)
    assert caught.value.status_code == 502 and caught.value.code == "integrity_error"
    assert fake.names()[-1] == undo
    assert "k" not in fake.objects


def sent_for(*parts: bytes) -> list[dict[str, str]]:
    return [{"ChecksumCRC32C": crc32c_b64(part)} for part in parts]


@pytest.mark.parametrize(
    "answer",
    [
        composite_crc32c([b"one", b"two"]),
        composite_crc32c([b"one", b"two"]).split("-")[0],  # no "-N": only the value is checked
    ],
)
def test_the_composite_crc32c_of_the_parts_sent_is_accepted(answer: str) -> None:
    integrity = UploadIntegrity(PROFILES["aws"], "k")
    for number, sent in enumerate(sent_for(b"one", b"two"), 1):
        integrity.check_part(number, {"ChecksumCRC32C": sent["ChecksumCRC32C"]}, sent)
    integrity.check_complete({"ChecksumCRC32C": answer}, 2)


@pytest.mark.parametrize(
    "answer",
    [
        composite_crc32c([b"two", b"one"]),  # the parts' checksums in another order
        composite_crc32c([b"one", b"two"]).replace("-2", "-3"),  # another part count
        composite_crc32c([b"one", b"two!"]),
        crc32c_b64(b"onetwo"),  # the full-object CRC32C, not the composite asked for
    ],
)
def test_a_composite_crc32c_that_does_not_follow_from_the_parts_sent_fails(answer: str) -> None:
    integrity = UploadIntegrity(PROFILES["aws"], "k")
    for number, sent in enumerate(sent_for(b"one", b"two"), 1):
        integrity.check_part(number, {"ChecksumCRC32C": sent["ChecksumCRC32C"]}, sent)
    with pytest.raises(IntegrityFailed, match="CRC32C"):
        integrity.check_complete({"ChecksumCRC32C": answer}, 2)


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


def test_a_store_that_does_not_echo_the_crc32c_is_warned_about_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A store that ignores flexible checksums verified nothing: say so once per upload (not
    per part), and still list what was sent at completion."""
    caplog.set_level(logging.WARNING, "app.storage.integrity")
    integrity = UploadIntegrity(PROFILES["aws"], "k")
    sent = sent_for(b"one", b"two")
    for number in (1, 2):
        integrity.check_part(number, {"ETag": '"x"'}, sent[number - 1])
    integrity.check_complete({"ETag": '"y-2"'}, 2)  # no composite: nothing to check
    warned = [r for r in caplog.records if "did not confirm the CRC32C of k" in r.getMessage()]
    assert len(warned) == 1
    assert integrity.completion_fields(2) == sent[1]
    UploadIntegrity(PROFILES["aws"], "other").check_part(1, {}, sent[0])
    assert len([r for r in caplog.records if "CRC32C of other" in r.getMessage()]) == 1


def test_each_profile_asks_for_its_own_check() -> None:
    assert UploadIntegrity(PROFILES["aws"], "k").create_arguments() == {
        "ChecksumAlgorithm": "CRC32C"
    }
    assert UploadIntegrity(PROFILES["minio"], "k").create_arguments() == {
        "ChecksumAlgorithm": "CRC32C"
    }
    assert UploadIntegrity(PROFILES["b2"], "k").create_arguments() == {}
    assert UploadIntegrity(PROFILES["local"], "k").create_arguments() == {}
