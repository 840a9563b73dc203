"""A recording stand-in for the S3 API, for unit tests of call order and arguments.

Integration tests use a real S3 API server; this fake exists to check exact call sequences,
to hold an upload mid-flight (backpressure), and to inject failures on demand.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import zlib
from typing import Any


def md5_etag(data: bytes) -> str:
    return f'"{hashlib.md5(data).hexdigest()}"'


def crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


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
        if body is not None and name == "upload_part":
            self.bodies[kwargs["PartNumber"]] = recorded["Body"]
            self.parts[kwargs["Key"], kwargs["PartNumber"]] = recorded["Body"]

    async def put_object(self, **kwargs: Any) -> dict[str, Any]:
        await self._record("put_object", kwargs)
        self.objects[kwargs["Key"]] = self.calls[-1][1]["Body"]
        return {"ETag": self._etag("put_object", self.objects[kwargs["Key"]])}

    def _etag(self, name: str, data: bytes) -> str:
        return md5_etag(data + b"!" if name in self.wrong_etag else data)

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
        answer = {"ETag": self._etag("upload_part", body)}
        if kwargs.get("ChecksumAlgorithm") == "CRC32":  # echoed, as S3 does
            answer["ChecksumCRC32"] = crc32_b64(body)
        return answer

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
        if all("ChecksumCRC32" in p for p in parts):
            crcs = b"".join(base64.b64decode(p["ChecksumCRC32"]) for p in parts)
            if "complete_multipart_upload" in self.wrong_checksum:
                crcs += b"!"
            answer["ChecksumCRC32"] = f"{crc32_b64(crcs)}-{len(parts)}"
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
