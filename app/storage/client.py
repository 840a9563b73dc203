"""The S3 side of the service: the calls it makes (`S3API`), and `S3Client`, which holds the
bucket and the upload policy, and opens one `ObjectUpload` per object.

Small objects go as one PutObject, the rest as multipart uploads (app/storage/upload.py).
`upload`, `upload_stream` and `upload_smart` store a whole buffer or stream in one call.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, Protocol

from app import metrics
from app.errors import KeyExists, StorageFailed
from app.storage.budget import MemoryBudget
from app.storage.buffers import Buffer, BufferPool, PartBuffer
from app.storage.failures import KEY_EXISTS_CODES, describe, error_code
from app.storage.integrity import UploadIntegrity
from app.storage.partsize import MAX_PART_SIZE, growing_part_size, plan_part_size
from app.storage.providers import PROFILES, ProviderProfile
from app.storage.upload import ObjectUpload, StoredObject

# ObjectUpload, StoredObject, error_code and describe are imported from here by callers.
__all__ = ["S3API", "ObjectUpload", "S3Client", "StoredObject", "describe", "error_code"]


class S3API(Protocol):
    """The S3 calls this service makes (an aiobotocore S3 client satisfies it)."""

    async def put_object(self, **kwargs: Any) -> dict[str, Any]: ...
    async def create_multipart_upload(self, **kwargs: Any) -> dict[str, Any]: ...
    async def upload_part(self, **kwargs: Any) -> dict[str, Any]: ...
    async def complete_multipart_upload(self, **kwargs: Any) -> dict[str, Any]: ...
    async def abort_multipart_upload(self, **kwargs: Any) -> dict[str, Any]: ...
    async def delete_object(self, **kwargs: Any) -> dict[str, Any]: ...
    async def head_bucket(self, **kwargs: Any) -> dict[str, Any]: ...
    # The hooks' pending deliveries (app/hooks/outbox.py).
    async def get_object(self, **kwargs: Any) -> dict[str, Any]: ...
    async def list_objects_v2(self, **kwargs: Any) -> dict[str, Any]: ...


class S3Client:
    """The bucket, the upload policy, and the cleanups that must outlive a cancelled request."""

    def __init__(
        self,
        client: S3API,
        bucket: str,
        *,
        part_size: int,
        multipart_threshold: int,
        parts_in_flight: int = 1,
        budget: MemoryBudget | None = None,
        provider: ProviderProfile = PROFILES["generic"],
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.part_size = part_size
        self.multipart_threshold = multipart_threshold
        self.parts_in_flight = parts_in_flight
        # None: buffers are not counted (unit tests, scripts); the service always has one.
        self.budget = budget
        self.provider = provider
        # Enough for each upload slot and the part filling beside it, for a few uploads.
        self.buffers = BufferPool(keep=2 * parts_in_flight + 2, max_size=part_size, budget=budget)
        self._cleanups: set[asyncio.Task[None]] = set()

    def open_upload(
        self,
        key: str,
        content_type: str | Callable[[], str],
        *,
        size_hint: int | None = None,
        force_multipart: bool = False,
        on_budget_wait: Callable[[], Awaitable[None]] | None = None,
        metadata: dict[str, str] | None = None,
        if_none_match: bool = False,
    ) -> ObjectUpload:
        """Start taking one object's bytes; the strategy follows the threshold rules.

        `size_hint` is an upper bound on the object's size (a request's Content-Length).
        Below the threshold the object is held for one PutObject; otherwise it is held only
        while it fits in its first part, and becomes a multipart upload once a second part
        begins. `on_budget_wait` runs before the upload waits for memory (see app.storage.budget).
        """
        part_size = plan_part_size(self.part_size, size_hint, self.provider.max_parts)
        part_sizes: Callable[[int], int] | None = None
        if size_hint is None and not self.provider.equal_parts:
            # A chunked body's length is unknown: its parts grow as it goes on.
            max_parts, cap = self.provider.max_parts, self.largest_part()

            def part_sizes(number: int) -> int:
                return growing_part_size(number, part_size, max_parts, cap)

        single_put_limit: int | None
        if force_multipart:
            single_put_limit = None
        elif (
            size_hint is not None
            and size_hint < self.multipart_threshold
            and not self.provider.equal_parts
        ):
            single_put_limit = self.multipart_threshold
        else:
            single_put_limit = part_size
        return ObjectUpload(
            self,
            key,
            content_type,
            part_size=part_size,
            single_put_limit=single_put_limit,
            size_hint=size_hint,
            on_budget_wait=on_budget_wait,
            metadata=metadata,
            if_none_match=if_none_match,
            part_sizes=part_sizes,
        )

    def largest_part(self) -> int:
        """The most one part of a growing upload may hold: with `parts_in_flight` parts
        sending and one filling, the upload still fits the memory budget."""
        if self.budget is None:
            return MAX_PART_SIZE
        return min(self.budget.limit // (self.parts_in_flight + 1), MAX_PART_SIZE)

    async def upload(self, data: Buffer, key: str, content_type: str) -> StoredObject:
        """Store `data` with one PutObject."""
        await self.call(
            "PutObject",
            self.client.put_object,
            Key=key,
            Body=io.BytesIO(data),
            ContentType=content_type,
        )
        return StoredObject(
            key=key,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            content_type=content_type,
            strategy="single",
            parts=1,
        )

    async def upload_stream(
        self,
        chunks: AsyncIterator[bytes],
        key: str,
        content_type: str,
        *,
        chunk_size: int | None = None,
    ) -> int:
        """Store an async stream of bytes as a multipart upload; return the bytes written."""
        upload = ObjectUpload(
            self,
            key,
            content_type,
            part_size=chunk_size or self.part_size,
            single_put_limit=None,
        )
        stored = await upload.consume(chunks)
        return stored.size

    async def upload_smart(
        self,
        chunks: AsyncIterator[bytes],
        key: str,
        content_type: str,
        *,
        size_hint: int | None = None,
    ) -> StoredObject:
        """Store a stream as one PutObject or a multipart upload, whichever fits its size."""
        return await self.open_upload(key, content_type, size_hint=size_hint).consume(chunks)

    async def delete(self, key: str) -> None:
        await self.call("DeleteObject", self.client.delete_object, Key=key)

    async def ping(self) -> None:
        """Raise StorageFailed unless the bucket answers."""
        await self.call("HeadBucket", self.client.head_bucket)

    async def call(
        self, operation: str, method: Callable[..., Awaitable[dict[str, Any]]], **kwargs: Any
    ) -> dict[str, Any]:
        """Call one S3 API method on our bucket; any failure becomes StorageFailed."""
        try:
            return await method(Bucket=self.bucket, **kwargs)
        except Exception as exc:
            if kwargs.get("IfNoneMatch") == "*" and error_code(exc) in KEY_EXISTS_CODES:
                raise KeyExists(
                    f"an object with key {kwargs.get('Key')!r} exists and is not replaced"
                ) from exc
            raise StorageFailed(f"storage {operation} failed: {describe(exc)}") from exc

    async def send_body(
        self,
        operation: str,
        method: Callable[..., Awaitable[dict[str, Any]]],
        body: PartBuffer,
        integrity: UploadIntegrity,
        **kwargs: Any,
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """Send a part's (or a PutObject's) bytes with the checksum its upload sends, timed
        by operation; return the answer and the checksum arguments sent, to check it."""
        checks = await integrity.arguments(body)
        with metrics.PART_SECONDS.labels(operation).time(), body.sending() as part:
            response = await self.call(operation, method, Body=part, **checks, **kwargs)
        return response, checks

    def run_cleanup(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run a cleanup to its end even if the caller is cancelled; shutdown waits for it."""
        task = asyncio.ensure_future(coro)
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)
        return task

    async def wait_for_cleanups(self, grace: float) -> None:
        if self._cleanups:
            await asyncio.wait(set(self._cleanups), timeout=grace)
