"""One object stored from a stream of bytes: one PutObject if it is small, else a multipart
upload.

`ObjectUpload` takes the object's bytes as they arrive, cuts them into parts and uploads part
N while part N+1 fills. Awaiting `write()` is the backpressure: it returns only once the bytes
are buffered and, when a part is full, an upload slot is free for it. Nothing is stored under
the final key until `commit()`; `abort()` removes whatever was started, even during
cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Literal

from app.errors import BodyTooLarge, StorageFailed
from app.storage.buffers import Buffer, ObjectBuffers
from app.storage.hashing import ObjectHash
from app.storage.integrity import UploadIntegrity
from app.storage.multipart import MultipartUpload
from app.storage.partsize import MIN_PART_SIZE

if TYPE_CHECKING:
    from app.storage.client import S3Client

logger = logging.getLogger("app.storage.upload")


@dataclasses.dataclass(frozen=True)
class StoredObject:
    """What was stored: the answer to the client is built from this."""

    key: str
    size: int
    sha256: str
    content_type: str
    strategy: str  # "single" (one PutObject) or "multipart"
    parts: int


#: Where an upload is in its life: "open" (taking bytes) -> "closed" (every byte is in; parts
#: may still be on their way) -> "committed" (visible under its key, its answer checked), or
#: "aborted" (its cleanup scheduled) from any of them.
UploadState = Literal["open", "closed", "committed", "aborted"]

#: How the object goes to storage; it only ever moves from "single_put" to "multipart".
#: "single_put": held whole in one buffer, for one PutObject while it fits the single-put limit.
#: "multipart": sent as parts; the multipart upload is created with the first part. An empty
#: object still goes as one PutObject: a multipart upload needs a part.
Route = Literal["single_put", "multipart"]


class ObjectUpload:
    """One object being stored from a stream of bytes (see the module docstring).

    `state` is where it is in its life, `route` how it goes to storage. MultipartUpload,
    ObjectBuffers, UploadIntegrity and ObjectHash (final once `close()` returned) do the rest.
    """

    def __init__(
        self,
        storage: S3Client,
        key: str,
        content_type: str | Callable[[], str],
        *,
        part_size: int,
        single_put_limit: int | None,
        size_hint: int | None = None,
        on_budget_wait: Callable[[], Awaitable[None]] | None = None,
        metadata: dict[str, str] | None = None,
        if_none_match: bool = False,
        part_sizes: Callable[[int], int] | None = None,
    ) -> None:
        """`single_put_limit`: the largest object sent as one PutObject (None: multipart).
        `part_sizes(n)`: the size of part n (from 1), if not `part_size` for every part."""
        self.storage = storage
        self.key = key
        self._content_type = content_type
        self.part_size = part_size
        # User metadata (x-amz-meta-*), ASCII only: set on PutObject or CreateMultipartUpload.
        self._metadata = {"Metadata": metadata} if metadata else {}
        # No-overwrite: the write that makes the object visible fails if the key exists.
        self._final_write = {"IfNoneMatch": "*"} if if_none_match else {}
        self._state: UploadState = "open"
        self._object_stored = False  # the object exists under its key: undoing deletes it
        self._cleanup: asyncio.Task[None] | None = None
        self._route: Route = "multipart" if single_put_limit is None else "single_put"
        self._single_put_limit = 0 if single_put_limit is None else single_put_limit  # see write
        self._multipart: MultipartUpload | None = None  # once CreateMultipartUpload answered
        self._integrity = UploadIntegrity(storage.provider, key)
        self._buffers = ObjectBuffers(
            storage.budget,
            storage.buffers,
            part_size=part_size,
            first_size=max(part_size, self._single_put_limit),
            size_hint=size_hint,
            on_wait=on_budget_wait,
            part_sizes=part_sizes,
        )
        self.size = 0
        self._hash = ObjectHash()
        self._sha256: str | None = None  # set by close()

    @property
    def state(self) -> UploadState:
        return self._state

    @property
    def route(self) -> Route:
        return self._route

    @property
    def content_type(self) -> str:
        value = self._content_type() if callable(self._content_type) else self._content_type
        return value or "application/octet-stream"

    @property
    def sha256(self) -> str:
        """Hex digest of the object's bytes, known once `close()` has returned."""
        if self._sha256 is None:
            raise RuntimeError(f"the SHA-256 of an upload that is {self._state} is not final")
        return self._sha256

    @property
    def strategy(self) -> str:
        """Whether a multipart upload exists ("multipart") or not ("single")."""
        return "single" if self._multipart is None else "multipart"

    @property
    def held_bytes(self) -> int:
        """Bytes buffered here right now (held parts and the part filling)."""
        return self._buffers.held_bytes

    async def write(self, data: Buffer) -> None:
        """Take the next bytes of the object; returns when they are safely buffered."""
        if self._state != "open":
            raise RuntimeError(f"write() on an upload that is {self._state}")
        if not data:
            return
        self.size += len(data)
        if self._route == "single_put" and self.size > self._single_put_limit:
            self._route = "multipart"
        view = memoryview(data)
        buffers = self._buffers
        while view:
            current = buffers.current
            if current.size == current.reserved:
                await self._make_room()
                continue
            view = buffers.fill(view)
        # A part that fills exactly at the end of `data` is sent when more bytes come, or at
        # close(), so an object of exactly one part still goes as one PutObject.
        if buffers.current.size == buffers.fill_to and self._route == "multipart":
            await self._part_full()

    async def _make_room(self) -> None:
        """The current buffer is at its reservation: reserve more, or move on to a new part."""
        buffers = self._buffers
        if buffers.current.size >= buffers.fill_to:
            await self._part_full()  # the next buffer reserves on the next pass
        elif buffers.current.size == 0:
            self._check_part_count()
            await buffers.grow()  # a fresh buffer holds nothing: it may wait
        elif buffers.try_grow():
            return
        elif (
            self._multipart is None
            and buffers.current.size >= MIN_PART_SIZE
            and not self.storage.provider.equal_parts  # it would be a short first part
        ):
            # A buffer the budget cannot grow would wait while holding memory: it becomes
            # the first part of a multipart upload instead, which frees it.
            self._route = "multipart"
            await self._part_full()
        else:
            # Only when the size hint was too small: wait, as a valid part must be whole.
            await buffers.grow()

    def _check_part_count(self) -> None:
        """A fresh buffer is about to take bytes: refuse a part the store would refuse, before
        it is sent rather than after."""
        max_parts = self.storage.provider.max_parts
        if self._buffers.part_number > max_parts:
            raise BodyTooLarge(
                f"the file is larger than the {self._buffers.buffered} bytes that "
                f"{max_parts} parts hold here; send the request's Content-Length, so that "
                "its parts are sized for it"
            )

    async def _part_full(self) -> None:
        # A single-put buffer larger than a part goes as one bigger first part rather than
        # being cut up: parts need not be equal in size, and cutting would copy it.
        await self._hash.add(self._buffers.current)  # its bytes are final
        self._buffers.hold_current()
        if self._route == "multipart":
            await self._send_held()

    async def _send_held(self) -> None:
        multipart = self._multipart
        if multipart is None:
            multipart = self._multipart = await MultipartUpload.create(
                self.storage,
                self.key,
                self._integrity,
                content_type=self.content_type,
                metadata=self._metadata,
            )
        while self._buffers.held:  # read again after each await: an abort empties it
            await multipart.send(self._buffers.held.pop(0))

    async def close(self) -> None:
        """All bytes are in: send the last part, wait until every part is stored and the
        SHA-256 is final."""
        if self._state == "open":
            self._state = "closed"
            self._buffers.current.trim()
            # The last part, or the whole object held for one PutObject.
            await self._hash.add(self._buffers.current)
            await self._flush()
        if self._sha256 is None:
            self._sha256 = await self._hash.digest()

    async def _flush(self) -> None:
        if self._route == "multipart" and self.size > 0:
            self._buffers.hold_last()  # the last part, maybe short
            await self._send_held()
        if self._multipart is not None:
            await self._multipart.wait()

    async def commit(self) -> StoredObject:
        """Make the object visible under its key (CompleteMultipartUpload or PutObject)."""
        await self.close()
        multipart = self._multipart
        if multipart is not None:
            response = await multipart.complete(self._final_write)
            self._object_stored = True  # from here on, undoing means deleting the object
            self._integrity.check_complete(response, multipart.part_count)
            part_count = multipart.part_count
        else:
            await self._put_object()
            part_count = 1
        self._buffers.release(reuse=True)
        if self._state == "closed":
            self._state = "committed"
        return StoredObject(
            key=self.key,
            size=self.size,
            sha256=self.sha256,
            content_type=self.content_type,
            strategy=self.strategy,
            parts=part_count,
        )

    async def _put_object(self) -> None:
        response, sent = await self.storage.send_body(
            "PutObject",
            self.storage.client.put_object,
            self._buffers.current,
            self._integrity,
            Key=self.key,
            ContentType=self.content_type,
            **self._metadata,
            **self._final_write,
        )
        self._object_stored = True
        self._integrity.check_answer("the object", response, sent)

    async def spill(self) -> None:
        """Stop holding a finished object for one PutObject: send its bytes as parts now.

        Used when a request holds too many small files waiting for the end of the body.
        """
        if self._state == "closed" and self._multipart is None and self.size > 0:
            self._route = "multipart"
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
        if self._cleanup is None:
            self._state = "aborted"
            self._buffers.release()
            self._cleanup = self.storage.run_cleanup(self._undo())
        return self._cleanup

    async def _undo(self) -> None:
        # What to undo is read once the parts have stopped, not when the abort began.
        await self._hash.stop()  # no thread hashes this upload's buffers any more
        if self._multipart is not None:
            await self._multipart.stop_parts()
        try:
            if self._object_stored:
                await self.storage.delete(self.key)
                logger.info("deleted %s after the request failed", self.key)
            elif self._multipart is not None:
                await self._multipart.abort()
        except StorageFailed as exc:
            # Left for the sweeper and the bucket's lifecycle rule.
            upload_id = None if self._multipart is None else self._multipart.upload_id
            logger.error(
                "cleanup failed for %s (upload id %s): %s", self.key, upload_id, exc.message
            )
