"""A recording stand-in for the S3 API, for unit tests of call order and arguments.

Integration tests use a real S3 API server; this fake exists to check exact call sequences,
to hold an upload mid-flight (backpressure), and to inject failures on demand.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from typing import Any

import google_crc32c


def md5_etag(data: bytes) -> str:
    return f'"{hashlib.md5(data).hexdigest()}"'


def crc32c_b64(data: bytes) -> str:
    """S3's form of a CRC32C, computed by google-crc32c: not the implementation the service
    uses (awscrt), so the two check each other."""
    return base64.b64encode(google_crc32c.value(bytes(data)).to_bytes(4, "big")).decode()


def composite_crc32c(parts: list[bytes]) -> str:
    """S3's composite checksum of a multipart object: the CRC32C of the parts' CRC32Cs."""
    crcs = b"".join(base64.b64decode(crc32c_b64(part)) for part in parts)
    return f"{crc32c_b64(crcs)}-{len(parts)}"


class FakeS3:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.bodies: dict[int, bytes] = {}  # part number -> body (tests of one object)
        self.parts: dict[tuple[str, int], bytes] = {}  # (key, part number) -> body
        self.objects: dict[str, bytes] = {}
        self.fail: dict[str, int] = {}  # operation -> fail on its n-th call (1-based)
        self.gate: asyncio.Event | None = None  # when set, upload_part waits for it
        self.delays: dict[int, float] = {}  # part number -> seconds before answering
        self._counts: dict[str, int] = {}
        self.part_started = asyncio.Event()
        # Operations whose answer carries a wrong ETag (a store that kept other bytes).
        self.wrong_etag: set[str] = set()
        self.wrong_checksum: set[str] = set()

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    async def _record(self, name: str, kwargs: dict[str, Any]) -> None:
        body = kwargs.get("Body")
        recorded = {k: v for k, v in kwargs.items() if k != "Body"}
        if body is not None:
            recorded["Body"] = bytes(body.read())
        self.calls.append((name, recorded))
        self._counts[name] = self._counts.get(name, 0) + 1
        if self.fail.get(name) == self._counts[name]:
            raise ConnectionError(f"injected failure in {name}")
        if "ContentMD5" in kwargs:  # verified like a real store does
            digest = base64.b64encode(hashlib.md5(recorded["Body"]).digest()).decode()
            if kwargs["ContentMD5"] != digest:
                raise ConnectionError(f"BadDigest in {name}")
        if "ChecksumCRC32C" in kwargs and kwargs["ChecksumCRC32C"] != crc32c_b64(recorded["Body"]):
            raise ConnectionError(f"BadDigest (CRC32C) in {name}")
        if body is not None and name == "upload_part":
            self.bodies[kwargs["PartNumber"]] = recorded["Body"]
            self.parts[kwargs["Key"], kwargs["PartNumber"]] = recorded["Body"]

    async def put_object(self, **kwargs: Any) -> dict[str, Any]:
        await self._record("put_object", kwargs)
        self.objects[kwargs["Key"]] = self.calls[-1][1]["Body"]
        answer = {"ETag": self._etag("put_object", self.objects[kwargs["Key"]])}
        return answer | self._echo("put_object", kwargs)

    def _etag(self, name: str, data: bytes) -> str:
        return md5_etag(data + b"!" if name in self.wrong_etag else data)

    def _echo(self, name: str, kwargs: dict[str, Any]) -> dict[str, str]:
        """A checksum sent comes back in the answer, as S3 does (verified in `_record`)."""
        if "ChecksumCRC32C" not in kwargs:
            return {}
        if name in self.wrong_checksum:
            return {"ChecksumCRC32C": crc32c_b64(b"other bytes")}
        return {"ChecksumCRC32C": kwargs["ChecksumCRC32C"]}

    async def create_multipart_upload(self, **kwargs: Any) -> dict[str, Any]:
        await self._record("create_multipart_upload", kwargs)
        return {"UploadId": "upload-1"}

    async def upload_part(self, **kwargs: Any) -> dict[str, Any]:
        await self._record("upload_part", kwargs)
        self.part_started.set()
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(self.delays.get(kwargs["PartNumber"], 0))
        body = self.calls_body(kwargs)
        return {"ETag": self._etag("upload_part", body)} | self._echo("upload_part", kwargs)

    def calls_body(self, kwargs: dict[str, Any]) -> bytes:
        return self.parts[kwargs["Key"], kwargs["PartNumber"]]

    async def complete_multipart_upload(self, **kwargs: Any) -> dict[str, Any]:
        await self._record("complete_multipart_upload", kwargs)
        parts = kwargs["MultipartUpload"]["Parts"]
        key = kwargs["Key"]
        self.objects[key] = b"".join(self.parts[key, p["PartNumber"]] for p in parts)
        digests = b"".join(hashlib.md5(self.parts[key, p["PartNumber"]]).digest() for p in parts)
        etag = f'"{hashlib.md5(digests).hexdigest()}-{len(parts)}"'
        if "complete_multipart_upload" in self.wrong_etag:
            etag = f'"{hashlib.md5(digests + b"!").hexdigest()}-{len(parts)}"'
        answer = {"ETag": etag}
        if all("ChecksumCRC32C" in p for p in parts):  # from the bytes it kept, as S3 does
            stored = [self.parts[key, p["PartNumber"]] for p in parts]
            if "complete_multipart_upload" in self.wrong_checksum:
                stored[-1] += b"!"
            answer["ChecksumCRC32C"] = composite_crc32c(stored)
        return answer

    async def abort_multipart_upload(self, **kwargs: Any) -> dict[str, Any]:
        await self._record("abort_multipart_upload", kwargs)
        return {}

    async def delete_object(self, **kwargs: Any) -> dict[str, Any]:
        await self._record("delete_object", kwargs)
        self.objects.pop(kwargs["Key"], None)
        return {}

    async def head_bucket(self, **kwargs: Any) -> dict[str, Any]:
        await self._record("head_bucket", kwargs)
        return {}
