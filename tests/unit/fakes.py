"""A recording stand-in for the S3 API, for unit tests of call order and arguments.

Integration tests use a real S3 API server; this fake exists to check exact call sequences,
to hold an upload mid-flight (backpressure), and to inject failures on demand.
"""

from __future__ import annotations

import asyncio
from typing import Any


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
        if body is not None and name == "upload_part":
            self.bodies[kwargs["PartNumber"]] = recorded["Body"]
            self.parts[kwargs["Key"], kwargs["PartNumber"]] = recorded["Body"]

    async def put_object(self, **kwargs: Any) -> dict[str, Any]:
        await self._record("put_object", kwargs)
        self.objects[kwargs["Key"]] = self.calls[-1][1]["Body"]
        return {"ETag": '"put"'}

    async def create_multipart_upload(self, **kwargs: Any) -> dict[str, Any]:
        await self._record("create_multipart_upload", kwargs)
        return {"UploadId": "upload-1"}

    async def upload_part(self, **kwargs: Any) -> dict[str, Any]:
        await self._record("upload_part", kwargs)
        self.part_started.set()
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(self.delays.get(kwargs["PartNumber"], 0))
        return {"ETag": f'"etag-{kwargs["PartNumber"]}"'}

    async def complete_multipart_upload(self, **kwargs: Any) -> dict[str, Any]:
        await self._record("complete_multipart_upload", kwargs)
        parts = kwargs["MultipartUpload"]["Parts"]
        key = kwargs["Key"]
        self.objects[key] = b"".join(self.parts[key, p["PartNumber"]] for p in parts)
        return {"ETag": '"complete"'}

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
