"""S3 storage: one PutObject for small objects, a multipart upload for the rest.

`ObjectUpload` takes an object's bytes as they arrive, cuts them into parts and uploads part N
while part N+1 fills. Awaiting `write()` is the backpressure: it returns only once the bytes are
buffered and, when a part is full, an upload slot is free for it. Nothing is stored under the
final key until `commit()`; `abort()` removes whatever was started, even during cancellation.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import io
import logging
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, Protocol

from app import metrics
from app.errors import IntegrityFailed, KeyExists, StorageFailed
from app.storage.budget import MemoryBudget
from app.storage.partsize import MIN_PART_SIZE, plan_part_size
from app.storage.providers import PROFILES, ProviderProfile

logger = logging.getLogger("app.storage.client")

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


class BufferPool:
    """Part buffers kept after use, so the next part reuses their memory.

    A fresh buffer costs a page fault for every 4 KiB written into it (and the kernel zeroes
    each page first); at 10 MiB parts that was a third of the service's CPU time. Only
    buffers whose part was stored are kept (a cancelled request's HTTP client may still be
    reading its buffer), and only a few, no larger than a part: idle memory stays small.

    Kept buffers count as idle memory in the budget, so the budget still bounds all part
    memory; they are dropped (`drain`) as soon as an upload would have to wait for memory.
    """

    def __init__(self, keep: int, max_size: int, budget: MemoryBudget | None = None) -> None:
        self.keep = keep
        self.max_size = max_size
        self._budget = budget
        self._spare: list[tuple[io.BytesIO, int]] = []

    def take(self) -> io.BytesIO:
        if not self._spare:
            return io.BytesIO()
        buffer, held = self._spare.pop()
        if self._budget is not None:
            self._budget.release_idle(held)  # the taker has reserved its own
        return buffer

    def give(self, buffer: io.BytesIO, size: int) -> None:
        if len(self._spare) >= self.keep or size > self.max_size:
            return
        budget = self._budget
        if budget is not None and not budget.keep_idle(size):
            return  # memory is short: let it go
        buffer.seek(0)  # overwritten from the start; body() cuts it to the new size
        self._spare.append((buffer, size))

    def drain(self) -> None:
        """Drop every kept buffer and give its memory back to the budget."""
        spare, self._spare = self._spare, []
        if self._budget is not None:
            for _, held in spare:
                self._budget.release_idle(held)


class PartBuffer:
    """The bytes of one part as they arrive.

    Kept in an io.BytesIO because aiohttp sends a BytesIO body in 64 KiB writes that yield to
    the event loop, while a raw bytes body over 1 MiB goes in one write (it warns that this
    may block the loop). Appending to a BytesIO grows it in place: no copy per part.

    `reserved` is what the buffer holds of the memory budget: it is reserved before bytes are
    appended (never more than that is appended) and given back by `release()`.
    """

    __slots__ = ("_budget", "_bytes", "_hashing", "_pool", "_taken", "reserved", "size")

    def __init__(self, budget: MemoryBudget | None = None, pool: BufferPool | None = None) -> None:
        self._budget = budget
        self._pool = pool
        self._bytes = io.BytesIO()
        self._taken = False  # a pooled buffer is taken at the first byte, not before
        self._hashing = False
        self.size = 0
        self.reserved = 0

    def append(self, data: Buffer) -> None:
        if not self._taken:
            # A pooled buffer may hold an earlier part's bytes past `size`: they are
            # overwritten as this part fills, and cut off by body().
            self._taken = True
            if self._pool is not None:
                self._bytes = self._pool.take()
        self.size += self._bytes.write(data)

    def body(self) -> io.BytesIO:
        """The part ready to send (read from its start)."""
        self._bytes.truncate(self.size)
        self._bytes.seek(0)
        return self._bytes

    def trim(self) -> None:
        """Give back the reserved memory this buffer will not fill (its object has ended)."""
        if self._budget is not None and self.reserved > self.size:
            self._budget.release(self.reserved - self.size)
        self.reserved = min(self.reserved, self.size)

    async def md5(self) -> bytes:
        """MD5 of the bytes, computed in a thread: hashlib releases the GIL for large
        buffers, so the event loop keeps receiving the next part on the other core."""
        buffer, size = self._bytes, self.size  # viewed only inside the thread
        self._hashing = True  # if we are cancelled, the thread may still be reading it
        digest = await asyncio.to_thread(lambda: hashlib.md5(buffer.getbuffer()[:size]).digest())
        self._hashing = False
        return digest

    def release(self, *, reuse: bool = False) -> None:
        """Drop the bytes and give their memory back to the budget (idempotent).

        `reuse`: the part was stored, nothing reads the buffer any more: it may be pooled.
        """
        buffer, self._bytes = self._bytes, io.BytesIO()
        if self._budget is not None and self.reserved:
            self._budget.release(self.reserved)
        self.reserved = 0
        if reuse and self._pool is not None and not self._hashing:
            self._pool.give(buffer, self.size)  # after the release, which made room for it


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
        if force_multipart:
            single_put_limit = 0
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
            parts_in_flight=self.parts_in_flight,
            size_hint=size_hint,
            on_budget_wait=on_budget_wait,
            metadata=metadata,
            if_none_match=if_none_match,
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
            if kwargs.get("IfNoneMatch") == "*" and error_code(exc) in _KEY_EXISTS_CODES:
                raise KeyExists(
                    f"an object with key {kwargs.get('Key')!r} exists and is not replaced"
                ) from exc
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
        size_hint: int | None = None,
        on_budget_wait: Callable[[], Awaitable[None]] | None = None,
        metadata: dict[str, str] | None = None,
        if_none_match: bool = False,
    ) -> None:
        self.storage = storage
        # No-overwrite: the write that makes the object visible fails if the key exists.
        self._final_write = {"IfNoneMatch": "*"} if if_none_match else {}
        # User metadata (x-amz-meta-*), ASCII only: set on PutObject or CreateMultipartUpload.
        self._metadata = {"Metadata": metadata} if metadata else {}
        self.key = key
        self._content_type = content_type
        self.part_size = part_size
        self.single_put_limit = single_put_limit
        # An object that may go as one PutObject fills one buffer up to that limit, so the
        # put needs no joining copy; once it is multipart, buffers are part-sized.
        self._fill_to = max(part_size, single_put_limit)
        self._size_hint = size_hint
        self._on_budget_wait = on_budget_wait
        self.size = 0
        self._buffered = 0  # bytes appended to buffers so far (`size` counts a chunk early)
        self._hash = hashlib.sha256()
        # Full parts waiting to be sent (the single-put buffer, once it turns multipart).
        self._held: list[PartBuffer] = []
        self._current = self._new_buffer()
        self._upload_id: str | None = None
        self._next_part = 1
        self._etags: dict[int, str] = {}
        self._slots = asyncio.Semaphore(parts_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()
        self._failure: BaseException | None = None
        self._closed = False
        self._stored: StoredObject | None = None
        self._completed = False  # the object exists under its key (committed or not checked)
        self._checksum = storage.provider.part_checksum
        self._part_md5s: dict[int, bytes] = {}
        self._part_crc32s: dict[int, str] = {}
        self._warned_unverified = False
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
            current = self._current
            if current.size == current.reserved:
                await self._make_room()
                continue
            room = current.reserved - current.size
            current.append(view[:room])
            self._buffered += min(room, len(view))
            view = view[room:]
        # A part that fills exactly at the end of `data` is sent when more bytes come, or at
        # close(), so an object of exactly one part still goes as one PutObject.
        if self._current.size == self._fill_to and self.upload_id_needed():
            await self._part_full()

    async def _make_room(self) -> None:
        """The current buffer is at its reservation: reserve more, or move on to a new part."""
        current = self._current
        if current.size >= self._fill_to:
            await self._part_full()  # the next buffer reserves on the next pass
            return
        size = self._grain()
        if current.size == 0:
            await self._reserve(current, size)  # a fresh buffer may wait: it holds nothing
        elif self._try_reserve(current, size):
            return
        elif (
            self._upload_id is None
            and current.size >= MIN_PART_SIZE
            and not self.storage.provider.equal_parts  # it would be a short first part
        ):
            # A single-put buffer the budget cannot grow would wait while holding memory:
            # it becomes the first part of a multipart upload instead, which frees it.
            self.single_put_limit = 0
            await self._part_full()
        else:
            # Only when the size hint was too small: wait, as a valid part must be whole.
            await self._reserve(current, size)

    def _grain(self) -> int:
        """How much the current buffer reserves next: up to a part, no more than can come."""
        want = min(self._fill_to - self._current.size, self.part_size)
        if self._size_hint is not None and self._size_hint > self._buffered:
            want = min(want, self._size_hint - self._buffered)
        return max(want, 1)

    def _try_reserve(self, buffer: PartBuffer, size: int) -> bool:
        """Reserve without waiting, dropping idle pooled buffers if that makes room."""
        budget = self.storage.budget
        if budget is not None and not budget.try_acquire(size):
            self.storage.buffers.drain()
            if not budget.try_acquire(size):
                return False
        buffer.reserved += size
        return True

    async def _reserve(self, buffer: PartBuffer, size: int) -> None:
        if self._try_reserve(buffer, size):
            return
        budget = self.storage.budget
        if budget is not None:
            metrics.BUDGET_WAITS.inc()
            if self._on_budget_wait is not None:
                await self._on_budget_wait()
            await budget.acquire(size)
        buffer.reserved += size

    def _new_buffer(self) -> PartBuffer:
        return PartBuffer(self.storage.budget, self.storage.buffers)

    def upload_id_needed(self) -> bool:
        """True once the object can no longer go as one PutObject."""
        return self._upload_id is not None or self.size > self.single_put_limit

    async def _part_full(self) -> None:
        # A single-put buffer larger than a part goes as one bigger first part rather than
        # being cut up: parts need not be equal in size, and cutting would copy it.
        full, self._current = self._current, self._new_buffer()
        self._held.append(full)
        self._fill_to = self.part_size
        if self.upload_id_needed():
            await self._send_held()

    async def _send_held(self) -> None:
        if self._upload_id is None:
            response = await self.storage.call(
                "CreateMultipartUpload",
                self.storage.client.create_multipart_upload,
                Key=self.key,
                ContentType=self.content_type,
                **self._algorithm(),
                **self._metadata,
            )
            self._upload_id = response["UploadId"]
        while self._held:
            part = self._held.pop(0)
            await self._send_part(part)

    async def _send_part(self, body: PartBuffer) -> None:
        # Taking the slot before returning to the caller is the backpressure: while every
        # slot is busy, the request body is not read.
        acquired = False
        try:
            await self._slots.acquire()
            acquired = True
            self._raise_if_failed()
        except BaseException:
            body.release()  # the part will not be sent: its memory is free again
            if acquired:
                self._slots.release()
            raise
        number = self._next_part
        self._next_part += 1
        task = asyncio.ensure_future(self._upload_part(number, body))
        self._tasks.add(task)
        task.add_done_callback(self._part_done)

    async def _upload_part(self, number: int, body: PartBuffer) -> None:
        metrics.PARTS_IN_FLIGHT.inc()
        try:
            checks, md5 = await self._part_checks(body)
            with metrics.PART_SECONDS.labels("UploadPart").time():
                response = await self.storage.call(
                    "UploadPart",
                    self.storage.client.upload_part,
                    Key=self.key,
                    UploadId=self._upload_id,
                    PartNumber=number,
                    Body=body.body(),
                    **checks,
                )
            self._check_part_answer(f"part {number}", response, md5)
            self._etags[number] = response["ETag"]
            if md5 is not None:
                self._part_md5s[number] = md5
            if "ChecksumCRC32" in response:
                self._part_crc32s[number] = response["ChecksumCRC32"]
            body.release(reuse=True)
        finally:
            metrics.PARTS_IN_FLIGHT.dec()
            body.release()
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
            self._current.trim()
            await self._flush()

    async def _flush(self) -> None:
        if self.upload_id_needed():
            if self._current.size:
                self._held.append(self._current)  # the last part, maybe short
                self._current = self._new_buffer()
            await self._send_held()
        if self._tasks:
            await asyncio.wait(set(self._tasks))
        self._raise_if_failed()

    async def commit(self) -> StoredObject:
        """Make the object visible under its key (CompleteMultipartUpload or PutObject)."""
        await self.close()
        if self._upload_id is not None:
            parts: list[dict[str, Any]] = []
            for n in sorted(self._etags):
                part = {"ETag": self._etags[n], "PartNumber": n}
                if n in self._part_crc32s:
                    part["ChecksumCRC32"] = self._part_crc32s[n]
                parts.append(part)
            response = await self.storage.call(
                "CompleteMultipartUpload",
                self.storage.client.complete_multipart_upload,
                Key=self.key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": parts},
                **self._final_write,
            )
            self._completed = True  # from here on, undoing means deleting the object
            self._check_complete_answer(response, len(parts))
            part_count = len(parts)
        else:
            checks, md5 = await self._part_checks(self._current)
            with metrics.PART_SECONDS.labels("PutObject").time():
                response = await self.storage.call(
                    "PutObject",
                    self.storage.client.put_object,
                    Key=self.key,
                    Body=self._current.body(),
                    ContentType=self.content_type,
                    **checks,
                    **self._metadata,
                    **self._final_write,
                )
            self._completed = True
            self._check_part_answer("the object", response, md5)
            part_count = 1
        self._drop_buffers(reuse=True)
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
            self._drop_buffers()
            self._abort_task = self.storage.run_cleanup(self._cleanup())
        return self._abort_task

    # --- integrity: what is sent with each part, and what the answers must say (providers.py)

    def _algorithm(self) -> dict[str, str]:
        return {"ChecksumAlgorithm": "CRC32"} if self._checksum == "crc32" else {}

    async def _part_checks(self, body: PartBuffer) -> tuple[dict[str, str], bytes | None]:
        """The checksum arguments for a part's (or PutObject's) request, and its MD5 if any.

        CRC32 is left to botocore, which computes it while sending (over HTTPS as a trailer,
        which also spares the SHA-256 payload signature); the store checks it and echoes it.
        """
        if self._checksum == "md5":
            md5 = await body.md5()
            return {"ContentMD5": base64.b64encode(md5).decode()}, md5
        return self._algorithm(), None

    def _check_part_answer(self, what: str, response: dict[str, Any], md5: bytes | None) -> None:
        if md5 is not None and self.storage.provider.etags_are_md5:
            etag = str(response.get("ETag", "")).strip('"')
            if etag.lower() != md5.hex():
                raise IntegrityFailed(
                    f"storage answered ETag {etag[:80]!r} for {what} of {self.key}, "
                    f"not the MD5 of the bytes sent ({md5.hex()})"
                )
        unconfirmed = self._checksum == "crc32" and "ChecksumCRC32" not in response
        if unconfirmed and not self._warned_unverified:
            # The store ignored the checksum: nothing verified this part. Say so once.
            self._warned_unverified = True
            logger.warning(
                "storage did not confirm the CRC32 of %s: is S3_PROVIDER right?", self.key
            )

    def _check_complete_answer(self, response: dict[str, Any], count: int) -> None:
        """The whole object's ETag or composite checksum against the parts' ones."""
        if self._checksum == "md5" and self.storage.provider.etags_are_md5:
            digests = b"".join(self._part_md5s[n] for n in sorted(self._part_md5s))
            expected = f"{hashlib.md5(digests).hexdigest()}-{count}"
            etag = str(response.get("ETag", "")).strip('"')
            if etag.lower() != expected:
                raise IntegrityFailed(
                    f"storage answered ETag {etag[:80]!r} for {self.key}, expected {expected} "
                    "from the parts sent"
                )
        composite = response.get("ChecksumCRC32")
        if self._checksum == "crc32" and composite and len(self._part_crc32s) == count:
            crcs = b"".join(base64.b64decode(self._part_crc32s[n]) for n in sorted(self._etags))
            whole = base64.b64encode(zlib.crc32(crcs).to_bytes(4, "big")).decode()
            if str(composite).split("-", 1)[0] != whole:
                raise IntegrityFailed(
                    f"storage answered CRC32 {composite!r} for {self.key}, expected {whole} "
                    "from the parts it confirmed"
                )

    def _drop_buffers(self, *, reuse: bool = False) -> None:
        for buffer in [*self._held, self._current]:
            buffer.release(reuse=reuse)
        self._held, self._current = [], self._new_buffer()

    async def _cleanup(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks))
        try:
            if self._completed:
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


#: What S3 answers a refused If-None-Match (412), or a race with another write of the key (409).
_KEY_EXISTS_CODES = {"PreconditionFailed", "ConditionalRequestConflict"}


def error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None


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
