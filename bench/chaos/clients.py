"""What one chaos client does: a well-formed upload, or one that disconnects, stalls or sends a
malformed body, over a raw socket so that the client controls exactly where it stops.

The bodies are generated while they are sent (app/client/generated.py) and the file's SHA-256
is computed on the way out, so any size costs constant memory. The answer is read while the
body is still being sent: an early answer (a refusal before the whole body) is seen as the
client would see it, not hidden behind a write that fails.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import hashlib
import json
import math
import random
import socket
import struct
import time
from collections.abc import Iterator
from typing import Any

from app.client.formbody import FormFile, MultipartBody
from app.client.generated import generated_chunks

KiB = 1024
MiB = 1024 * KiB


class Behaviour(enum.Enum):
    GOOD = "good"
    #: Closes (FIN) or resets (RST) its connection at a random byte, possibly after the last.
    DISCONNECT = "disconnect"
    #: Stops sending at a random byte and waits, past the service's idle timeout.
    STALL = "stall"
    #: `Content-Type: application/octet-stream`, the raw file as the body.
    NOT_MULTIPART = "not-multipart"
    #: multipart/form-data without a boundary, or with one that is not in the body.
    BAD_BOUNDARY = "bad-boundary"
    #: A form whose closing delimiter is missing (Content-Length says so: nothing is cut).
    TRUNCATED = "truncated"


#: How often each behaviour is drawn.
WEIGHTS = {
    Behaviour.GOOD: 64,
    Behaviour.DISCONNECT: 14,
    Behaviour.STALL: 6,
    Behaviour.NOT_MULTIPART: 5,
    Behaviour.BAD_BOUNDARY: 5,
    Behaviour.TRUNCATED: 6,
}
#: Malformed bodies are refused whatever their size: no point in sending more than this.
MALFORMED_MAX = 64 * MiB


@dataclasses.dataclass(frozen=True)
class Attempt:
    """One request as planned: what it sends and where it stops."""

    number: int
    behaviour: Behaviour
    size: int
    #: Body bytes sent before the client disconnects or stalls; None: the whole body.
    cut_at: int | None = None
    #: A disconnect by RST (SO_LINGER 0) rather than FIN.
    reset: bool = False
    #: BAD_BOUNDARY: a boundary parameter that the body does not use (else none at all).
    wrong_boundary: bool = False

    @property
    def seed(self) -> int:
        return 1_000_000 + self.number

    @property
    def filename(self) -> str:
        """Unique per attempt: how a stored object is traced back to its request."""
        return f"chaos-{self.number:05d}-{self.behaviour.value}.bin"


class AttemptPlan:
    """The run's sequence of attempts, the same for the same seed whatever the timing."""

    def __init__(self, seed: int, min_size: int, max_size: int) -> None:
        self.random = random.Random(seed)
        self.min_size = min_size
        self.max_size = max_size
        self.count = 0

    def size(self, largest: int) -> int:
        """Log-uniform: as many 1-10 KiB files as 100-1000 MiB ones."""
        low, high = math.log(self.min_size), math.log(max(largest, self.min_size))
        return round(math.exp(self.random.uniform(low, high)))

    def next(self) -> Attempt:
        self.count += 1
        behaviours, weights = zip(*WEIGHTS.items(), strict=True)
        behaviour = self.random.choices(behaviours, weights)[0]
        largest = self.max_size if behaviour in _STORABLE else min(self.max_size, MALFORMED_MAX)
        size = self.size(largest)
        length = Request.build(Attempt(self.count, behaviour, size)).length
        if behaviour is Behaviour.DISCONNECT:
            # One in four after the last byte: the service may have stored it, answer unseen.
            whole = self.random.random() < 0.25
            cut = length if whole else self.random.randrange(length)
            return Attempt(self.count, behaviour, size, cut, reset=self.random.random() < 0.5)
        if behaviour is Behaviour.STALL:
            return Attempt(self.count, behaviour, size, self.random.randrange(1, length))
        wrong = behaviour is Behaviour.BAD_BOUNDARY and self.random.random() < 0.5
        return Attempt(self.count, behaviour, size, wrong_boundary=wrong)


_STORABLE = (Behaviour.GOOD, Behaviour.DISCONNECT, Behaviour.STALL)


@dataclasses.dataclass
class Request:
    """An attempt's request head and body stream; the file's digest fills in as it is sent."""

    content_type: str
    length: int
    chunks: Iterator[bytes]
    digest: Any

    @classmethod
    def build(cls, attempt: Attempt) -> Request:
        digest = hashlib.sha256()

        def file_data() -> Iterator[bytes]:
            for block in generated_chunks(attempt.seed, attempt.size):
                digest.update(block)
                yield block

        if attempt.behaviour is Behaviour.NOT_MULTIPART:
            return cls("application/octet-stream", attempt.size, file_data(), digest)
        body = MultipartBody([], [FormFile("file", attempt.filename, file_data(), attempt.size)])
        length = body.content_length
        assert length is not None
        content_type = body.content_type
        if attempt.behaviour is Behaviour.BAD_BOUNDARY:
            wrong = "; boundary=x-not-in-it" if attempt.wrong_boundary else ""
            content_type = f"multipart/form-data{wrong}"
        if attempt.behaviour is Behaviour.TRUNCATED:
            length -= len(f"--{body.boundary}--\r\n")
        return cls(content_type, length, _first_bytes(body.chunks(), length), digest)

    def head(self, port: int) -> bytes:
        return (
            f"POST /uploads HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: {self.content_type}\r\nContent-Length: {self.length}\r\n"
            "Connection: close\r\n\r\n"
        ).encode()


def _first_bytes(chunks: Iterator[bytes], limit: int) -> Iterator[bytes]:
    left = limit
    for chunk in chunks:
        if left <= 0:
            return
        yield chunk[:left]
        left -= min(len(chunk), left)


@dataclasses.dataclass
class Outcome:
    """What happened to one attempt, filled in as it goes (a run cut short leaves it partial)."""

    attempt: Attempt
    length: int = 0
    #: Body bytes written and drained to the socket.
    sent: int = 0
    status: int | None = None
    #: The answer's JSON, when it was JSON.
    answer: dict[str, Any] | None = None
    #: Why no answer was seen, when none was.
    error: str | None = None
    #: The start of an answer that was not JSON (nginx's own page, the ASGI server's text).
    text: str | None = None
    #: SHA-256 of the file, when the whole body was sent.
    sha256: str | None = None
    finished: bool = False
    seconds: float = 0.0

    @property
    def whole_body_sent(self) -> bool:
        return self.length > 0 and self.sent == self.length

    @property
    def code(self) -> str | None:
        """The JSON error code, if the answer was the service's JSON error."""
        error = (self.answer or {}).get("error")
        return error.get("code") if isinstance(error, dict) else None


async def perform(outcome: Outcome, port: int, stall_wait: float) -> None:
    """Send the attempt to 127.0.0.1:`port` and record what happened in `outcome`."""
    attempt = outcome.attempt
    request = Request.build(attempt)
    outcome.length = request.length
    started = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as exc:
        outcome.error = f"connecting: {type(exc).__name__}"
        outcome.finished = True
        return
    answer = asyncio.create_task(read_answer(reader))
    try:
        writer.write(request.head(port))
        limit = request.length if attempt.cut_at is None else attempt.cut_at
        try:
            await _send(writer, _first_bytes(request.chunks, limit), answer, outcome)
        except ConnectionError as exc:
            outcome.error = f"sending: {type(exc).__name__}"
        if outcome.whole_body_sent:
            outcome.sha256 = request.digest.hexdigest()
        if attempt.behaviour is Behaviour.DISCONNECT:
            if attempt.reset:
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            wait = stall_wait if attempt.behaviour is Behaviour.STALL else None
            await asyncio.wait({answer}, timeout=wait)
            if not answer.done():
                outcome.error = f"no answer within {stall_wait:.0f} s of stalling"
        if answer.done():
            _record(outcome, answer)
    finally:
        answer.cancel()
        if attempt.reset:
            writer.transport.abort()
        else:
            writer.close()
        outcome.seconds = time.monotonic() - started
    outcome.finished = True  # not when cancelled: the run cut it


async def _send(
    writer: asyncio.StreamWriter,
    chunks: Iterator[bytes],
    answer: asyncio.Task[tuple[int, bytes]],
    outcome: Outcome,
) -> None:
    """Write the chunks, each drained before the next, until done or an answer arrives."""
    for chunk in chunks:
        if answer.done():
            return
        writer.write(chunk)
        drain = asyncio.ensure_future(writer.drain())
        await asyncio.wait({drain, answer}, return_when=asyncio.FIRST_COMPLETED)
        if not drain.done():
            drain.cancel()
            return
        drain.result()
        outcome.sent += len(chunk)


def _record(outcome: Outcome, answer: asyncio.Task[tuple[int, bytes]]) -> None:
    try:
        status, body = answer.result()
    except (ConnectionError, asyncio.IncompleteReadError, ValueError) as exc:
        outcome.error = f"no answer: {type(exc).__name__}"
        return
    outcome.status = status
    try:
        parsed = json.loads(body)
    except ValueError:
        outcome.text = body[:300].decode("latin-1")
        return
    outcome.answer = parsed if isinstance(parsed, dict) else None


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """An HTTP/1.1 response's status and body (Content-Length, chunked, or until EOF)."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    lines = head.split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        return status, await reader.readexactly(int(headers["content-length"]))
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            body += (await reader.readexactly(size + 2))[:-2]
        return status, body
    return status, await reader.read()
