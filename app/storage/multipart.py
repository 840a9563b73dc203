"""One S3 multipart upload once it exists: its parts, its completion, its abort."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from app.storage.buffers import PartBuffer
from app.storage.integrity import UploadIntegrity
from app.storage.parts import PartScheduler

if TYPE_CHECKING:
    from app.storage.client import S3Client

logger = logging.getLogger("app.storage.multipart")

#: Told of each part once it is stored: its number, size, ETag and the checksum arguments sent.
OnPartStored = Callable[[int, int, str, dict[str, str]], None]


class MultipartUpload:
    """The calls of one multipart upload, from its first part to CompleteMultipartUpload or
    AbortMultipartUpload; `create()` starts one."""

    def __init__(
        self,
        storage: S3Client,
        key: str,
        upload_id: str,
        integrity: UploadIntegrity,
        parts_in_flight: int,
        *,
        first_part: int = 1,
        on_part_stored: OnPartStored | None = None,
    ) -> None:
        """`first_part`: the number of the first part sent through this object (a resumable
        upload goes on from the parts earlier requests stored)."""
        self.storage = storage
        self.key = key
        self.upload_id = upload_id
        self._integrity = integrity
        self._etags: dict[int, str] = {}  # of the parts stored, by part number
        self._parts = PartScheduler(parts_in_flight, self._send, first_number=first_part)
        self._on_part_stored = on_part_stored

    @classmethod
    async def create(
        cls,
        storage: S3Client,
        key: str,
        integrity: UploadIntegrity,
        *,
        content_type: str,
        metadata: dict[str, Any],
    ) -> MultipartUpload:
        """CreateMultipartUpload; `metadata` is the object's Metadata argument, if it has one."""
        response = await storage.call(
            "CreateMultipartUpload",
            storage.client.create_multipart_upload,
            Key=key,
            ContentType=content_type,
            **integrity.create_arguments(),
            **metadata,
        )
        return cls(storage, key, response["UploadId"], integrity, storage.parts_in_flight)

    @property
    def part_count(self) -> int:
        """Parts stored so far."""
        return len(self._etags)

    async def send(self, body: PartBuffer) -> None:
        """Send `body` as the next part; returns once it is under way (see app.storage.parts)."""
        await self._parts.submit(body)

    async def wait(self) -> None:
        """Wait until every part sent is stored; raise the first failure."""
        await self._parts.wait()

    async def complete(self, final_write: dict[str, str]) -> dict[str, Any]:
        """CompleteMultipartUpload with every part stored, in order; return the answer.

        `final_write`: the arguments of the write that makes the object visible (IfNoneMatch).
        """
        parts: list[dict[str, Any]] = []
        for n in sorted(self._etags):
            parts.append(
                {"ETag": self._etags[n], "PartNumber": n, **self._integrity.completion_fields(n)}
            )
        return await self.storage.call(
            "CompleteMultipartUpload",
            self.storage.client.complete_multipart_upload,
            Key=self.key,
            UploadId=self.upload_id,
            MultipartUpload={"Parts": parts},
            **final_write,
        )

    async def stop_parts(self) -> None:
        """Cancel the parts still on their way, and wait until they have ended."""
        await self._parts.cancel()

    async def abort(self) -> None:
        """AbortMultipartUpload: the store drops every part."""
        await self.storage.call(
            "AbortMultipartUpload",
            self.storage.client.abort_multipart_upload,
            Key=self.key,
            UploadId=self.upload_id,
        )
        logger.info("aborted multipart upload %s of %s", self.upload_id, self.key)

    async def _send(self, number: int, body: PartBuffer) -> None:
        response, sent = await self.storage.send_body(
            "UploadPart",
            self.storage.client.upload_part,
            body,
            self._integrity,
            Key=self.key,
            UploadId=self.upload_id,
            PartNumber=number,
        )
        self._integrity.check_part(number, response, sent)
        self._etags[number] = response["ETag"]
        if self._on_part_stored is not None:
            self._on_part_stored(number, body.size, response["ETag"], dict(sent))
        body.release(reuse=True)
