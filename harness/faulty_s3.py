"""A fault-injecting reverse proxy in front of a real S3 API server, on loopback.

A real server cannot be asked to answer 503 SlowDown or drop a connection on the third
UploadPart; this proxy forwards everything untouched (signatures stay valid: the Host header
is passed through) except the requests a test (or `python -m bench chaos`) tells it to break.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import re
from collections.abc import Callable

import aiohttp
import google_crc32c
from aiohttp import web

SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
INTERNAL = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
    b"<Message>We encountered an internal error.</Message></Error>"
)
BAD_DIGEST = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>BadDigest</Code>'
    b"<Message>The CRC32C you specified did not match the calculated checksum.</Message></Error>"
)
#: Faults answered without reaching the store: (status, S3 XML error body).
REFUSALS = {
    "slowdown": (503, SLOW_DOWN),
    "internal": (500, INTERNAL),
    "bad_digest": (400, BAD_DIGEST),
}
#: Faults forwarded to the store, whose answer is then altered.
ALTERED = {"wrong_etag", "wrong_checksum"}


def operation(request: web.Request) -> str:
    """The S3 operation a request is, as far as the tests care."""
    query = request.query
    if request.method == "PUT" and "partNumber" in query and "uploadId" in query:
        return "UploadPart"
    if request.method == "POST" and "uploadId" in query:
        return "CompleteMultipartUpload"
    if request.method == "POST" and "uploads" in query:
        return "CreateMultipartUpload"
    if request.method == "DELETE" and "uploadId" in query:
        return "AbortMultipartUpload"
    if request.method == "PUT":
        return "PutObject"
    return request.method


@dataclasses.dataclass
class Fault:
    """Break calls of `operation` number `first` to `last` (1-based; last=None: forever).

    `operation` "*" breaks every call, counted per operation: the store unreachable.
    """

    operation: str
    first: int = 1
    last: int | None = 1
    #: "slowdown" (503), "internal" (500), "bad_digest" (400 BadDigest: the store found the
    #: bytes damaged), "drop" (close mid-body), "hold" (a slow store: the call is forwarded
    #: once `until` is set), or, forwarding the call and then altering the
    #: answer like a store that kept other bytes than it was sent: "wrong_etag" (an ETag not
    #: the store's) or "wrong_checksum" (an x-amz-checksum-crc32c / <ChecksumCRC32C> not the
    #: one sent).
    kind: str = "slowdown"
    until: asyncio.Event | None = None


class FaultyS3:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.faults: list[Fault] = []
        self.counts: dict[str, int] = {}
        self.broken: list[tuple[str, int, str]] = []
        self.requests: list[tuple[str, dict[str, str]]] = []  # (operation, headers) of each
        self.queries: list[dict[str, str]] = []  # the query of each, in the same order
        self.endpoint = ""
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> FaultyS3:
        app = web.Application(client_max_size=0)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.endpoint = f"http://127.0.0.1:{port}"
        self._session = aiohttp.ClientSession(auto_decompress=False)
        return self

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def _fault_for(self, name: str, number: int) -> Fault | None:
        for fault in self.faults:
            in_range = fault.first <= number and (fault.last is None or number <= fault.last)
            if fault.operation in (name, "*") and in_range:
                return fault
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        name = operation(request)
        self.requests.append((name, {k.lower(): v for k, v in request.headers.items()}))
        self.queries.append(dict(request.query))
        self.counts[name] = self.counts.get(name, 0) + 1
        fault = self._fault_for(name, self.counts[name])
        body = await request.read()
        if fault is not None and fault.kind == "hold":
            self.broken.append((name, self.counts[name], fault.kind))
            assert fault.until is not None, "a held call needs the event that releases it"
            await fault.until.wait()
            fault = None
        if fault is not None and fault.kind not in ALTERED:
            self.broken.append((name, self.counts[name], fault.kind))
            if fault.kind == "drop":
                assert request.transport is not None
                request.transport.close()  # the connection dies without an answer
                return web.Response(status=500)
            status, payload = REFUSALS[fault.kind]
            return web.Response(status=status, body=payload, content_type="application/xml")
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() != "transfer-encoding"}
        async with self._session.request(
            request.method,
            self.upstream + request.path_qs,
            headers=headers,
            data=io.BytesIO(body),
            allow_redirects=False,
        ) as upstream:
            payload = await upstream.read()
            out = {
                k: v
                for k, v in upstream.headers.items()
                if k.lower() not in ("content-length", "transfer-encoding", "connection")
            }
            if fault is not None and fault.kind == "wrong_etag":
                self.broken.append((name, self.counts[name], fault.kind))
                out = {k: (_corrupt(v) if k.lower() == "etag" else v) for k, v in out.items()}
                payload = re.sub(
                    rb"<ETag>(.*?)</ETag>",
                    lambda m: b"<ETag>" + _corrupt(m.group(1).decode()).encode() + b"</ETag>",
                    payload,
                )
            elif fault is not None:  # wrong_checksum
                self.broken.append((name, self.counts[name], fault.kind))
                out, payload = _wrong_checksum(request, body, out, payload)
            return web.Response(status=upstream.status, body=payload, headers=out)


def _wrong_checksum(
    request: web.Request, body: bytes, headers: dict[str, str], payload: bytes
) -> tuple[dict[str, str], bytes]:
    """The store's answer as if it had kept other bytes: the CRC32C it echoes (a part's, a
    PutObject's) or the composite it reports (CompleteMultipartUpload) is not the right one.

    Stores that ignore flexible checksums (rclone) echo none: the wrong one is added. The
    right one is what the request carried, or for a completion the composite of the parts'
    checksums it lists; either way one bit of it is flipped.
    """
    headers = {k: v for k, v in headers.items() if k.lower() != "x-amz-checksum-crc32c"}
    if operation(request) != "CompleteMultipartUpload":
        sent = request.headers.get("x-amz-checksum-crc32c", "AAAAAA==")
        headers["x-amz-checksum-crc32c"] = _flip(sent)
        return headers, payload
    listed = re.findall(rb"<ChecksumCRC32C>(.*?)</ChecksumCRC32C>", body)
    crcs = b"".join(base64.b64decode(value) for value in listed)
    composite = base64.b64encode(google_crc32c.value(crcs).to_bytes(4, "big")).decode()
    element = f"<ChecksumCRC32C>{_flip(composite)}-{len(listed)}</ChecksumCRC32C>".encode()
    payload = re.sub(rb"<ChecksumCRC32C>.*?</ChecksumCRC32C>", b"", payload)
    end = b"</CompleteMultipartUploadResult>"
    return headers, payload.replace(end, element + end)


def _flip(checksum: str) -> str:
    """A base64 checksum with one bit changed."""
    raw = bytearray(base64.b64decode(checksum))
    raw[0] ^= 1
    return base64.b64encode(bytes(raw)).decode()


def _corrupt(etag: str) -> str:
    """The same ETag (quoted or XML-escaped) with the first digit of its MD5 changed."""
    return re.sub(
        "[0-9a-f]{32}", lambda m: ("1" if m[0][0] == "0" else "0") + m[0][1:], etag, count=1
    )


FaultSetter = Callable[..., None]
