"""Sending a part's bytes to the store from the memory they were received into, uncopied.

botocore takes the request body from the `Body` argument, aiobotocore hands it to aiohttp,
and aiohttp sends an io.BytesIO by reading 256 KiB copies out of it, with a loop turn
between each. Here the body is a `PartBody`: a read-only file over the part buffer's memory,
which botocore can size, rewind and (when it computes a checksum or signs the payload
itself) read like any file. aiohttp sends it as a `PartPayload`: the bytes from the file's
position on, as one memoryview, in one write; the transport sends them from the part
buffer's memory as the socket takes them, and the loop turns once per part, not once per
256 KiB.

The part buffer must not change until the transport is done with it. It does not: a buffer
is reused only after the store answered the part, so after every byte was sent, and
`PartBuffer` refuses to reuse memory that any view still holds (app/storage/buffers.py).

What this relies on, each pinned in tests/unit/storage/test_sendpath.py, and held to the
versions those tests cover by the bounds in pyproject.toml:
- aiobotocore passes a body that is not an io.IOBase to aiohttp as it is (it wraps an
  IOBase body in a proxy);
- aiohttp finds a body's payload class in `aiohttp.payload.PAYLOAD_REGISTRY` by the body's
  type (`register_payload`) and sends it with `Payload.write_with_length(writer, length)`;
- botocore sizes a file body with `len()`, rewinds it with `seek(0)` before a retry, and
  reads it only to compute what it was not given (a checksum, a payload signature).
"""

from __future__ import annotations

import io
from typing import Any

from aiohttp.abc import AbstractStreamWriter
from aiohttp.payload import Payload, register_payload


class PartBody:
    """A part's bytes as botocore's request body: a read-only file over a memoryview.

    Not an io.IOBase: aiobotocore would wrap one in a proxy. `close()` releases the view
    (the owner does, once the request is over); botocore and aiohttp never close it.
    """

    __slots__ = ("_position", "_view")

    def __init__(self, view: memoryview) -> None:
        self._view = view
        self._position = 0

    def __len__(self) -> int:
        return self._view.nbytes

    def __bool__(self) -> bool:
        return True  # botocore tests `if not body` for "no body": an empty part is a body

    def read(self, size: int = -1) -> bytes:
        """A copy of the next `size` bytes (all if negative): botocore's own reads only."""
        end = self._view.nbytes if size < 0 else min(self._position + size, self._view.nbytes)
        data = bytes(self._view[self._position : end])
        self._position = max(end, self._position)
        return data

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._view.nbytes}
        position = base[whence] + offset
        if position < 0:
            raise ValueError(f"negative seek position {position}")
        self._position = position
        return position

    def tell(self) -> int:
        return self._position

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def view(self, start: int) -> memoryview:
        """The bytes from `start` to the end, uncopied; the position moves to the end."""
        self._position = max(self._position, self._view.nbytes)
        return self._view[start:]

    def close(self) -> None:
        self._view.release()


class PartPayload(Payload):
    """How aiohttp sends a PartBody: its bytes from the position it had when the payload was
    made, in one write, as often as aiohttp sends the request (it resends an idempotent
    request once by itself when a kept-alive connection turns out closed)."""

    _value: PartBody

    def __init__(self, value: PartBody, *args: Any, **kwargs: Any) -> None:
        super().__init__(value, *args, **kwargs)
        self._start = value.tell()
        self._size = max(len(value) - self._start, 0)

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return self._value.read().decode(encoding, errors)

    async def write(self, writer: AbstractStreamWriter) -> None:
        await self.write_with_length(writer, None)

    async def write_with_length(
        self, writer: AbstractStreamWriter, content_length: int | None
    ) -> None:
        rest = self._value.view(self._start)
        if content_length is not None:
            rest = rest[:content_length]
        if rest:
            # One write: the transport sends what the socket takes now and keeps a reference
            # to the rest (no copy); the writer then waits until the transport has drained.
            await writer.write(rest)


register_payload(PartPayload, PartBody)
