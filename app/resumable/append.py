"""One request's bytes appended to a resumable upload.

The bytes go into part buffers exactly as a form upload's do (same part sizes, memory budget
and backpressure), but the parts are numbered on from the parts earlier requests stored, and
the first buffer starts with the upload's tail (the bytes that did not fill a part before),
read back from the bucket only once a new byte arrives. What does not fill a part when the
request ends becomes the new tail; the last bytes of the upload become its last part.

Each full part's new bytes are hashed, in order, into the upload's whole-file SHA-256 and, for
a tus PATCH with Upload-Checksum, into the request's own digest; the SHA-256 state after each
part is kept, so that the state written at any part boundary holds the digest up to it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from app.errors import (
    BodyTooLarge,
    ChecksumMismatch,
    LengthExceeded,
    LengthMismatch,
    StorageFailed,
)
from app.resumable import sha256
from app.resumable.protocol import Checksum
from app.resumable.state import ResumableState, StoredPart, Tail, tail_key
from app.storage import S3Client
from app.storage.buffers import Buffer, ObjectBuffers, PartBuffer
from app.storage.integrity import UploadIntegrity
from app.storage.multipart import MultipartUpload


@dataclasses.dataclass
class Appended:
    """What an append adds to the state: new parts, the new tail, the SHA-256 up to them."""

    parts: list[StoredPart]
    tail: Tail | None
    keeps_old_tail: bool  # no new part and no new tail: the old tail is still the tail
    sha256_state: str | None

    def apply(self, state: ResumableState) -> None:
        state.parts.extend(self.parts)
        if not self.keeps_old_tail:
            state.tail = self.tail
        if self.sha256_state is not None or not self.keeps_old_tail:
            state.sha256_state = self.sha256_state


class Append:
    """One request's bytes into `state`'s multipart upload (see the module docstring)."""

    def __init__(
        self,
        storage: S3Client,
        state: ResumableState,
        *,
        checksum: Checksum | None,
        max_length: int = 0,
    ) -> None:
        """`max_length`: the most bytes an upload of unknown length may reach (0: S3's)."""
        self.storage = storage
        self.state = state
        self._max_length = max_length
        self.received = 0  # new bytes taken
        self._checksum = checksum
        self._check = checksum.hasher() if checksum else None
        self._first = len(state.parts) + 1  # the first part this request sends
        max_parts = storage.provider.max_parts
        self._integrity = UploadIntegrity(storage.provider, state.key)
        for part in state.parts:
            self._integrity.remember(part.number, part.checks)
        self._stored: dict[int, StoredPart] = {}
        self._multipart = MultipartUpload(
            storage,
            state.key,
            state.upload_id,
            self._integrity,
            storage.parts_in_flight,
            first_part=self._first,
            on_part_stored=self._part_stored,
        )
        first = self._first
        remaining = None if state.length is None else state.length - state.parts_size
        sizes: Callable[[int], int] = lambda n: state.part_size_of(n + first - 1, max_parts)  # noqa: E731
        self._buffers = ObjectBuffers(
            storage.budget,
            storage.buffers,
            part_size=sizes(1),
            first_size=sizes(1),
            size_hint=remaining,
            part_sizes=sizes,
        )
        self._tail_loaded = state.tail is None
        self._prefix = 0  # bytes at the start of the current buffer from the old tail
        self._hash = (
            sha256.ResumableSha256(state.sha256_state)
            if state.sha256_state is not None and sha256.available()
            else None
        )
        self._hash_after: dict[int, str | None] = {}  # SHA-256 state after each part sent
        self.finishing = False  # finish() was called (it runs once)

    @property
    def new_offset(self) -> int:
        return self.state.offset + self.received

    async def write(self, data: Buffer) -> None:
        """Take the request's next bytes; returns once they are buffered (backpressure)."""
        if not data:
            return
        length = self.state.length
        if length is not None and self.new_offset + len(data) > length:
            raise LengthExceeded(
                f"the request carries bytes past the upload's length of {length}; none of "
                "its bytes is kept"
            )
        if length is None and self._max_length and self.new_offset + len(data) > self._max_length:
            raise BodyTooLarge(f"the upload is larger than the limit of {self._max_length} bytes")
        if not self._tail_loaded:
            await self._load_tail()
        self.received += len(data)
        await self._fill(memoryview(data))

    async def _fill(self, view: memoryview) -> None:
        buffers = self._buffers
        while view:
            current = buffers.current
            if current.size == current.reserved:
                if current.size >= buffers.fill_to:
                    await self._part_full()
                else:
                    await buffers.grow()
                continue
            view = buffers.fill(view)

    async def _load_tail(self) -> None:
        """The old tail's bytes become the start of the first part (already hashed)."""
        self._tail_loaded = True
        tail = self.state.tail
        assert tail is not None
        storage = self.storage
        response = await storage.call("GetObject", storage.client.get_object, Key=tail.key)
        if str(response.get("ETag")) != tail.etag:
            raise StorageFailed(f"the tail {tail.key} is not the one the upload's state names")
        size = 0
        body = response["Body"]
        try:
            while chunk := await body.read(1 << 20):
                size += len(chunk)
                self._prefix += len(chunk)
                await self._fill(memoryview(chunk))
        finally:
            body.close()
        if size != tail.size:
            raise StorageFailed(f"the tail {tail.key} has {size} bytes, not {tail.size}")

    async def _digest(self, buffer: PartBuffer) -> None:
        """Hash the buffer's new bytes into the whole-file SHA-256 and the request's digest."""
        start, hasher, check = self._prefix, self._hash, self._check
        self._prefix = 0
        if buffer.size <= start or (hasher is None and check is None):
            return

        def work(view: memoryview) -> None:
            new = view[start:]
            if hasher is not None:
                hasher.update(new)
            if check is not None:
                check.update(new)

        await buffer.digest(work)

    async def _part_full(self) -> None:
        buffers = self._buffers
        max_parts = self.storage.provider.max_parts
        if self._first + buffers.part_number - 1 >= max_parts:
            # The part filling now would be followed by more: one past the store's limit.
            raise BodyTooLarge(
                f"the upload is larger than the {self.new_offset} bytes {max_parts} parts hold "
                "here; give its length when creating it, so that its parts are sized for it"
            )
        await self._digest(buffers.current)
        number = self._first + buffers.part_number - 1
        self._hash_after[number] = self._hash.state() if self._hash else None
        buffers.hold_current()
        await self._multipart.send(buffers.held.pop(0))

    def _part_stored(self, number: int, size: int, etag: str, checks: dict[str, str]) -> None:
        self._stored[number] = StoredPart(number, size, etag, checks)

    def durable(self) -> Appended:
        """What is stored so far: the new parts stored in an unbroken run from the first (for
        a checkpoint while the request goes on, or after it failed)."""
        parts: list[StoredPart] = []
        number = self._first
        while number in self._stored:
            parts.append(self._stored[number])
            number += 1
        if not parts:
            return Appended([], None, keeps_old_tail=True, sha256_state=None)
        return Appended(
            parts, None, keeps_old_tail=False, sha256_state=self._hash_after.get(number - 1)
        )

    async def finish(self, *, complete: bool) -> Appended:
        """The request's bytes are all in (or it was cut off: `complete` is then False): send
        what is left as the last part or keep it as the new tail, once every part is stored
        and the request's checksum, if it had one, matched."""
        self.finishing = True
        if complete and not self._tail_loaded:
            await self._load_tail()  # the tail becomes the last part
        buffers = self._buffers
        current = buffers.current
        current.trim()
        await self._digest(current)
        checksum = self._checksum
        if checksum is not None and self._check is not None:
            matched = self._check.digest() == checksum.digest
            if not matched:
                await self.stop()
                raise ChecksumMismatch(
                    f"the request's bytes do not match its Upload-Checksum "
                    f"({checksum.algorithm}); none of them is kept"
                )
        length = self.state.length
        if complete and length is not None and self.new_offset != length:
            await self.stop()
            raise LengthMismatch(
                f"the upload would end at {self.new_offset} bytes, not at its length {length}; "
                "none of the request's bytes is kept"
            )
        sha_state = self._hash.state() if self._hash else None
        full = current.size > 0 and current.size == buffers.fill_to
        if complete or full:
            if current.size or not (self.state.parts or self._stored or buffers.part_number > 1):
                await self._send_last()
            await self._multipart.wait()
            appended = self.durable()
            return Appended(appended.parts, None, keeps_old_tail=False, sha256_state=sha_state)
        await self._multipart.wait()
        appended = self.durable()
        if current.size == 0:
            if not appended.parts:
                # No new byte reached the bucket: the state is as it was.
                return Appended([], None, keeps_old_tail=True, sha256_state=None)
            return Appended(appended.parts, None, keeps_old_tail=False, sha256_state=sha_state)
        tail = await self._put_tail(current)
        return Appended(appended.parts, tail, keeps_old_tail=False, sha256_state=sha_state)

    async def _send_last(self) -> None:
        """The last part (empty only for an empty upload: a multipart upload needs a part)."""
        buffers = self._buffers
        self._hash_after[self._first + buffers.part_number - 1] = (
            self._hash.state() if self._hash else None
        )
        if buffers.current.size:
            buffers.hold_last()
            await self._multipart.send(buffers.held.pop(0))
        else:
            await self._multipart.send(PartBuffer(self.storage.budget, None))

    async def _put_tail(self, buffer: PartBuffer) -> Tail:
        key = tail_key(self.state.id, self.new_offset)
        integrity = UploadIntegrity(self.storage.provider, key)
        response, sent = await self.storage.send_body(
            "PutObject",
            self.storage.client.put_object,
            buffer,
            integrity,
            Key=key,
            ContentType="application/octet-stream",
        )
        integrity.check_answer("the tail", response, sent)
        size = buffer.size
        buffer.release(reuse=True)
        return Tail(key, size, str(response["ETag"]))

    async def stop(self) -> None:
        """Stop the parts still on their way and drop the buffers."""
        await self._multipart.stop_parts()
        self._buffers.release()

    def release(self) -> None:
        self._buffers.release(reuse=True)


def object_record(
    state: ResumableState, sha256_hex: str | None, response: dict[str, Any]
) -> dict[str, Any]:
    """The completed object, as the answers and the post-finish hook carry it."""
    return {
        "key": state.key,
        "size": state.offset,
        "sha256": sha256_hex,
        "content_type": state.content_type,
        "filename": state.filename,
        "strategy": "multipart",
        "parts": len(state.parts),
        "etag": str(response.get("ETag", "")).strip('"'),
    }
