"""S3 storage: one PutObject for small objects, a multipart upload for the rest.

`ObjectUpload` takes an object's bytes as they arrive, cuts them into parts and uploads part N
while part N+1 fills. Awaiting `write()` is the backpressure: it returns only once the bytes are
buffered and, when a part is full, an upload slot is free for it. Nothing is stored under the
final key until `commit()`; `abort()` removes whatever was started, even during cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import io
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, Protocol

from app.errors import StorageFailed
from app.partsize import plan_part_size

logger = logging.getLogger("app.storage")

Buffer = bytes | bytearray | memoryview


class S3API(Protocol):
    """The S3 calls this service makes (an aiobotocore S3 client satisfies it)."""

    async def put_object(self, **kwargs: Any) -> dict[str, Any]: ...
    async def create_multipart_upload(self, **kwargs: Any) -> dict[str, Any]: ...
    async def upload_part(self, **kwargs: Any) -> dict[str, Any]: ...
    async def complete_multipart_upload(self, **kwargs: Any) -> dict[str, Any]: ...
    async def abort_multipart_upload(self, **kwargs: Any) -> dict[str, Any]: ...
    async def delete_object(self, **kwargs: Any) -> dict[str, Any]: ...
    async def head_bucket(self, **kwargs: Any) -> dict[str, Any]: ...


class PartBuffer:
    """The bytes of one part as they arrive.

    Kept in an io.BytesIO because aiohttp sends a BytesIO body in 64 KiB writes that yield to
    the event loop, while a raw bytes body over 1 MiB goes in one write (it warns that this
    may block the loop). Appending to a BytesIO grows it in place: no copy per part.
    """

    __slots__ = ("_bytes", "size")

    def __init__(self) -> None:
        self._bytes = io.BytesIO()
        self.size = 0

    def append(self, data: Buffer) -> None:
        self.size += self._bytes.write(data)

    def body(self) -> io.BytesIO:
        """The part ready to send (read from its start)."""
        self._bytes.seek(0)
        return self._bytes

    def split(self, size: int) -> list[PartBuffer]:
        """Copy into buffers of `size` bytes (the last may be shorter)."""
        pieces = []
        with self._bytes.getbuffer() as view:
            for start in range(0, self.size, size):
                piece = PartBuffer()
                piece.append(view[start : start + size])
                pieces.append(piece)
        return pieces

    @staticmethod
    def join(parts: list[PartBuffer]) -> io.BytesIO:
        if len(parts) == 1:
            return parts[0].body()
        return io.BytesIO(b"".join(part._bytes.getvalue() for part in parts))


@dataclasses.dataclass(frozen=True)
class StoredObject:
    """What was stored: the answer to the client is built from this."""

    key: str
    size: int
    sha256: str
    content_type: str
    strategy: str  # "single" (one PutObject) or "multipart"
    parts: int


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
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.part_size = part_size
        self.multipart_threshold = multipart_threshold
        self.parts_in_flight = parts_in_flight
        self._cleanups: set[asyncio.Task[None]] = set()

    def open_upload(
        self,
        key: str,
        content_type: str | Callable[[], str],
        *,
        size_hint: int | None = None,
        force_multipart: bool = False,
    ) -> ObjectUpload:
        """Start taking one object's bytes; the strategy follows the threshold rules.

        `size_hint` is an upper bound on the object's size (a request's Content-Length).
        Below the threshold the object is held for one PutObject; otherwise it is held only
        while it fits in its first part, and becomes a multipart upload once a second part
        begins.
        """
        if force_multipart:
            single_put_limit = 0
        elif size_hint is not None and size_hint < self.multipart_threshold:
            single_put_limit = self.multipart_threshold
        else:
            single_put_limit = self.part_size
        return ObjectUpload(
            self,
            key,
            content_type,
            part_size=plan_part_size(self.part_size, size_hint),
            single_put_limit=single_put_limit,
            parts_in_flight=self.parts_in_flight,
        )

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
            single_put_limit=0,
            parts_in_flight=self.parts_in_flight,
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
            raise StorageFailed(f"storage {operation} failed: {describe(exc)}") from exc

    def run_cleanup(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run a cleanup to its end even if the caller is cancelled; shutdown waits for it."""
        task = asyncio.ensure_future(coro)
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)
        return task

    async def wait_for_cleanups(self, grace: float) -> None:
        if self._cleanups:
            await asyncio.wait(set(self._cleanups), timeout=grace)


class ObjectUpload:
    """One object being stored from a stream of bytes (see the module docstring)."""

    def __init__(
        self,
        storage: S3Client,
        key: str,
        content_type: str | Callable[[], str],
        *,
        part_size: int,
        single_put_limit: int,
        parts_in_flight: int,
    ) -> None:
        self.storage = storage
        self.key = key
        self._content_type = content_type
        self.part_size = part_size
        self.single_put_limit = single_put_limit
        # An object that may go as one PutObject fills one buffer up to that limit, so the
        # put needs no joining copy; once it is multipart, buffers are part-sized.
        self._fill_to = max(part_size, single_put_limit)
        self.size = 0
        self._hash = hashlib.sha256()
        # Full parts held back while the object may still go as one PutObject.
        self._held: list[PartBuffer] = []
        self._current = PartBuffer()
        self._upload_id: str | None = None
        self._next_part = 1
        self._etags: dict[int, str] = {}
        self._slots = asyncio.Semaphore(parts_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()
        self._failure: BaseException | None = None
        self._closed = False
        self._stored: StoredObject | None = None
        self._abort_task: asyncio.Task[None] | None = None

    @property
    def content_type(self) -> str:
        value = self._content_type() if callable(self._content_type) else self._content_type
        return value or "application/octet-stream"

    @property
    def sha256(self) -> str:
        """Hex digest of the bytes written so far."""
        return self._hash.hexdigest()

    @property
    def strategy(self) -> str:
        return "single" if self._upload_id is None else "multipart"

    @property
    def held_bytes(self) -> int:
        """Bytes buffered here right now (held parts and the part filling)."""
        return sum(b.size for b in self._held) + self._current.size

    async def write(self, data: Buffer) -> None:
        """Take the next bytes of the object; returns when they are safely buffered."""
        if self._closed:
            raise RuntimeError("write() after close()")
        if not data:
            return
        self._hash.update(data)
        self.size += len(data)
        view = memoryview(data)
        while view:
            room = self._fill_to - self._current.size
            self._current.append(view[:room])
            view = view[room:]
            if self._current.size == self._fill_to and view:
                await self._part_full()
        # A part that fills exactly at the end of `data` is sent when more bytes come, or at
        # close(), so an object of exactly one part still goes as one PutObject.
        if self._current.size == self._fill_to and self.upload_id_needed():
            await self._part_full()

    def upload_id_needed(self) -> bool:
        """True once the object can no longer go as one PutObject."""
        return self._upload_id is not None or self.size > self.single_put_limit

    async def _part_full(self) -> None:
        full, self._current = self._current, PartBuffer()
        if full.size > self.part_size:
            # A single-put buffer outgrew its limit (the size hint was wrong): cut it into
            # parts, keeping a short remainder as the part that fills next.
            pieces = full.split(self.part_size)
            if pieces[-1].size < self.part_size:
                self._current = pieces.pop()
            self._held.extend(pieces)
            self._fill_to = self.part_size
        else:
            self._held.append(full)
        if self.upload_id_needed():
            await self._send_held()

    async def _send_held(self) -> None:
        if self._upload_id is None:
            response = await self.storage.call(
                "CreateMultipartUpload",
                self.storage.client.create_multipart_upload,
                Key=self.key,
                ContentType=self.content_type,
            )
            self._upload_id = response["UploadId"]
        while self._held:
            part = self._held.pop(0)
            await self._send_part(part)

    async def _send_part(self, body: PartBuffer) -> None:
        # Taking the slot before returning to the caller is the backpressure: while every
        # slot is busy, the request body is not read.
        await self._slots.acquire()
        self._raise_if_failed()
        number = self._next_part
        self._next_part += 1
        task = asyncio.ensure_future(self._upload_part(number, body))
        self._tasks.add(task)
        task.add_done_callback(self._part_done)

    async def _upload_part(self, number: int, body: PartBuffer) -> None:
        try:
            response = await self.storage.call(
                "UploadPart",
                self.storage.client.upload_part,
                Key=self.key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=body.body(),
            )
            self._etags[number] = response["ETag"]
        finally:
            self._slots.release()

    def _part_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and self._failure is None:
            self._failure = task.exception()

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            if isinstance(self._failure, StorageFailed):
                raise self._failure
            raise StorageFailed(f"part upload failed: {describe(self._failure)}")

    async def close(self) -> None:
        """All bytes are in: send the last part and wait until every part is stored."""
        if not self._closed:
            self._closed = True
            await self._flush()

    async def _flush(self) -> None:
        if self.upload_id_needed():
            if self._current.size:
                self._held.append(self._current)  # the last part, maybe short
                self._current = PartBuffer()
            await self._send_held()
        if self._tasks:
            await asyncio.wait(set(self._tasks))
        self._raise_if_failed()

    async def commit(self) -> StoredObject:
        """Make the object visible under its key (CompleteMultipartUpload or PutObject)."""
        await self.close()
        if self._upload_id is not None:
            parts = [{"ETag": self._etags[n], "PartNumber": n} for n in sorted(self._etags)]
            await self.storage.call(
                "CompleteMultipartUpload",
                self.storage.client.complete_multipart_upload,
                Key=self.key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": parts},
            )
            part_count = len(parts)
        else:
            body = PartBuffer.join([*self._held, self._current])
            await self.storage.call(
                "PutObject",
                self.storage.client.put_object,
                Key=self.key,
                Body=body,
                ContentType=self.content_type,
            )
            part_count = 1
        self._held, self._current = [], PartBuffer()
        self._stored = StoredObject(
            key=self.key,
            size=self.size,
            sha256=self.sha256,
            content_type=self.content_type,
            strategy=self.strategy,
            parts=part_count,
        )
        return self._stored

    async def spill(self) -> None:
        """Stop holding a finished object for one PutObject: send its bytes as parts now.

        Used when a request holds too many small files waiting for the end of the body.
        """
        if self._upload_id is None and self._closed and self.size > 0:
            self.single_put_limit = 0
            await self._flush()

    async def consume(self, chunks: AsyncIterator[bytes]) -> StoredObject:
        """Store a whole stream: write every chunk, then commit; abort on any failure."""
        try:
            async for chunk in chunks:
                await self.write(chunk)
            return await self.commit()
        except BaseException:
            await self.abort()
            raise

    async def abort(self) -> None:
        """Remove whatever this upload started; runs to the end even if we are cancelled."""
        # shield: a cancelled caller stops waiting, but the cleanup task runs on.
        with contextlib.suppress(Exception):
            await asyncio.shield(self.begin_abort())

    def begin_abort(self) -> asyncio.Task[None]:
        """Schedule the cleanup (once) and return its task, without waiting for it."""
        if self._abort_task is None:
            self._held, self._current = [], PartBuffer()
            self._abort_task = self.storage.run_cleanup(self._cleanup())
        return self._abort_task

    async def _cleanup(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks))
        try:
            if self._stored is not None:
                await self.storage.delete(self.key)
                logger.info("deleted %s after the request failed", self.key)
            elif self._upload_id is not None:
                await self.storage.call(
                    "AbortMultipartUpload",
                    self.storage.client.abort_multipart_upload,
                    Key=self.key,
                    UploadId=self._upload_id,
                )
                logger.info("aborted multipart upload %s of %s", self._upload_id, self.key)
        except StorageFailed as exc:
            # Left for the sweeper and the bucket's lifecycle rule.
            logger.error(
                "cleanup failed for %s (upload id %s): %s", self.key, self._upload_id, exc.message
            )


def describe(exc: BaseException) -> str:
    """A short, log-safe description of a storage exception."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error", {})
        code = error.get("Code")
        message = error.get("Message")
        if code:
            return f"{code}: {message}" if message else str(code)
    text = str(exc) or type(exc).__name__
    return text if len(text) < 300 else text[:297] + "..."
