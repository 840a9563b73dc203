"""HTTP endpoints of resumable uploads: `/files/` (create, discovery) and `/files/{id}` (the
upload: HEAD for the offset, PATCH to append, DELETE to terminate), in tus 1.0 and the IETF
draft alike (app/resumable/protocol.py tells them apart).

Each request is judged from its headers (protocol, token, offset, media type, lease) before
a byte of its body is read; an answer given before the body was read is delivered as
/uploads delivers its refusals (app/lingering.py).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from app import metrics
from app.auth import check_bearer
from app.body import body_chunks
from app.endpoints import check_capacity, content_length, request_id
from app.errors import (
    BodyTooLarge,
    ClientGone,
    IdleTimeout,
    InvalidUploadHeader,
    LengthExceeded,
    LengthMismatch,
    MalformedMultipart,
    OffsetMismatch,
    ServerBusy,
    ShuttingDown,
    StorageFailed,
    Unauthorized,
    UnsupportedProtocol,
    UploadCompleted,
    UploadError,
    UploadExpired,
    UploadLocked,
    UploadNotFound,
    error_response,
)
from app.hooks.events import UploadContext
from app.lingering import LingeringResponse, waits_for_continue
from app.resumable import protocol as proto
from app.resumable.append import Append
from app.resumable.protocol import Protocol
from app.resumable.state import ResumableState
from app.resumable.uploads import Held, NewUpload, ResumableUploads
from app.settings import Settings

logger = logging.getLogger("app.resumable")

#: The path of an upload; its URL is the capability to continue it (app/resumable/uploads.py).
FILES_PATH = "/files/"


class ResumableRequest:
    """One request at /files/: its protocol, who sends it, how much body was read, and its
    answer (with the protocol's headers, the right Upload-Offset on an error, one log line)."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self.settings: Settings = request.app.state.settings
        self.uploads: ResumableUploads = request.app.state.resumable
        self.started = time.monotonic()
        self.protocol = Protocol("tus")  # until the headers say otherwise
        self.received = 0
        self.body_ended = False
        self.client_stopped = False
        self.offset: int | None = None  # the upload's offset, for error answers
        self.request_id = request_id(request)

    def admit(self) -> str | None:
        """The protocol and the token, from the headers; who uploads (the token's name)."""
        headers = self.request.headers
        self.protocol = proto.protocol_of(headers)
        return check_bearer(headers, self.settings.bearer_tokens)

    def context(self, owner: str | None, declared_size: int | None) -> UploadContext:
        """Who sends this request, as its hooks tell it (never the token)."""
        client = self.request.client.host if self.request.client else "-"
        return UploadContext(owner, client, self.request_id, declared_size)

    def body_size(self) -> int | None:
        """The declared Content-Length, within UPLOAD_MAX_BYTES."""
        try:
            size = content_length(self.request)
        except MalformedMultipart as exc:  # the form endpoint's code; here a header's
            raise InvalidUploadHeader(exc.message) from None
        if size is None:
            return None
        limit = self.settings.max_body_bytes
        if limit and size > limit:
            raise BodyTooLarge(f"the body is larger than the limit of {limit} bytes")
        return size

    def has_body(self) -> bool:
        headers = self.request.headers
        return headers.get("content-length", "0").strip() not in ("", "0") or (
            "transfer-encoding" in headers
        )

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body, counted; cut-offs become the service's errors."""
        limit = self.settings.max_body_bytes
        try:
            async for chunk in body_chunks(self.request.receive, self.settings.idle_timeout):
                self.received += len(chunk)
                metrics.BYTES_RECEIVED.inc(len(chunk))
                if limit and self.received > limit:
                    raise BodyTooLarge(f"the body is larger than the limit of {limit} bytes")
                yield chunk
        except ClientDisconnect:
            self.client_stopped = True
            raise ClientGone("the client disconnected before the body was complete") from None
        except IdleTimeout:
            self.client_stopped = True
            raise
        except asyncio.CancelledError:
            raise ShuttingDown("the server shut down during the append; resume it") from None
        self.body_ended = True

    # --- answers ---------------------------------------------------------------------------

    def upload_headers(self, state: ResumableState) -> dict[str, str]:
        headers = {**self.protocol.headers(), "Upload-Offset": str(_offset(state))}
        if state.length is not None:
            headers["Upload-Length"] = str(state.length)
        if self.protocol.is_tus:
            if state.completed is None:
                headers["Upload-Expires"] = proto.http_date(_when(state.expires))
        else:
            headers["Upload-Complete"] = proto.boolean(state.completed is not None)
            headers["Upload-Limit"] = self.upload_limit()
        return headers

    def upload_limit(self) -> str:
        limit = self.settings.max_body_bytes
        return f"min-size=0,max-size={limit}" if limit else "min-size=0"

    def answer(self, status: int, state: ResumableState, *, body: bool = True) -> Response:
        headers = self.upload_headers(state)
        self.log(status, state.id, "")
        if status in (204,) or not body:
            return Response(status_code=status, headers=headers)
        return JSONResponse(describe(state), status_code=status, headers=headers)

    def failed(self, exc: UploadError, upload_id: str = "") -> Response:
        status, code = exc.status_code, exc.code
        if not self.protocol.is_tus:
            if isinstance(exc, UploadLocked):
                status = 409  # the drafts' answer to a request that cannot append now
            elif isinstance(exc, UploadExpired):
                status = 404
        headers = dict(self.protocol.headers())
        offset = self.offset
        if isinstance(exc, UploadLocked) and exc.upload_offset is not None:
            offset = exc.upload_offset
        if offset is not None and not isinstance(exc, UploadNotFound | UploadExpired):
            headers["Upload-Offset"] = str(offset)
        if isinstance(exc, UnsupportedProtocol):
            headers["Tus-Version"] = proto.TUS_VERSION
        if isinstance(exc, Unauthorized):
            headers["WWW-Authenticate"] = "Bearer"
        if isinstance(exc, ShuttingDown | ServerBusy):
            headers["Retry-After"] = "5"
        if not self.body_ended:
            headers["Connection"] = "close"
        metrics.RESUMABLE_REQUESTS.labels(self.request.method, str(status), code).inc()
        (logger.error if isinstance(exc, StorageFailed) else logger.info)(
            "resumable %s %s failed: %d %s: %s",
            self.request.method,
            upload_id or "-",
            status,
            code,
            exc.message,
            extra={"fields": self._fields(status, upload_id, code)},
        )
        answer: Response
        if self.request.method == "HEAD":
            answer = Response(status_code=status, headers=headers)
        else:
            answer = error_response(status, code, exc.message, headers=headers)
        return self._delivered(answer)

    def _delivered(self, answer: Response) -> Response:
        if self.body_ended or self.client_stopped or not self.has_body():
            return answer
        if self.received == 0 and waits_for_continue(self.request):
            return answer
        return LingeringResponse(
            answer, seconds=self.settings.linger_seconds, max_bytes=self.settings.linger_bytes
        )

    def log(self, status: int, upload_id: str, code: str) -> None:
        metrics.RESUMABLE_REQUESTS.labels(self.request.method, str(status), code).inc()
        logger.info(
            "resumable %s %s: %d, %d bytes in %.3f s",
            self.request.method,
            upload_id or "-",
            status,
            self.received,
            time.monotonic() - self.started,
            extra={"fields": self._fields(status, upload_id, code)},
        )

    def _fields(self, status: int, upload_id: str, code: str) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "client": self.request.client.host if self.request.client else "-",
            "method": self.request.method,
            "upload": upload_id,
            "protocol": self.protocol.name,
            "status": status,
            "code": code,
            "bytes": self.received,
            "seconds": round(time.monotonic() - self.started, 3),
        }


def _offset(state: ResumableState) -> int:
    return state.completed["size"] if state.completed else state.offset


def _when(unix: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(unix, dt.UTC)


def describe(state: ResumableState) -> dict[str, Any]:
    """The JSON answer about an upload (creation, the completing append)."""
    answer: dict[str, Any] = {
        "id": state.id,
        "url": f"{FILES_PATH}{state.id}",
        "offset": _offset(state),
        "length": state.length,
        "complete": state.completed is not None,
        "expires": _when(state.expires).isoformat(),
        "filename": state.filename,
    }
    if state.completed is not None:
        answer["object"] = state.completed
    return answer


# --- the routes ----------------------------------------------------------------------------


async def files(request: Request) -> Response:
    """`/files/`: OPTIONS (what the server supports) and POST (create an upload)."""
    if request.method == "OPTIONS":
        return options(request)
    return await create(request)


def options(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    headers = {
        "Tus-Resumable": proto.TUS_VERSION,
        "Tus-Version": proto.TUS_VERSION,
        "Tus-Extension": proto.TUS_EXTENSIONS,
        "Tus-Checksum-Algorithm": ",".join(proto.CHECKSUM_ALGORITHMS),
        "Upload-Limit": (
            f"min-size=0,max-size={settings.max_body_bytes}"
            if settings.max_body_bytes
            else "min-size=0"
        ),
    }
    if settings.max_body_bytes:
        headers["Tus-Max-Size"] = str(settings.max_body_bytes)
    return Response(status_code=204, headers=headers)


async def create(request: Request) -> Response:
    """POST /files/: a new upload, with the first bytes if the request carries any."""
    call = ResumableRequest(request)
    try:
        owner = call.admit()
        headers = request.headers
        length = proto.integer(headers, "upload-length")
        complete = None if call.protocol.is_tus else proto.upload_complete(headers)
        body_size = call.body_size()
        if call.protocol.is_tus:
            if length is None:
                raise InvalidUploadHeader(
                    "a tus creation carries Upload-Length (deferred lengths are not supported)"
                )
        else:
            if complete is None:
                raise InvalidUploadHeader("an IETF creation carries Upload-Complete: ?0 or ?1")
            if complete and body_size is not None:
                if length is not None and length != body_size:
                    raise LengthMismatch("Upload-Length and the complete body's length differ")
                length = body_size
        has_body = call.has_body()
        if has_body and call.protocol.is_tus:
            call.protocol.check_body_type(headers.get("content-type"))
        if length is not None and body_size is not None and body_size > length:
            raise LengthExceeded("the body is longer than Upload-Length")
        raw_metadata = headers.get("upload-metadata", "")
        new = NewUpload(
            length=length,
            metadata_header=raw_metadata,
            metadata=proto.parse_metadata(raw_metadata),
            owner=owner,
            protocol=call.protocol.name,
            context=call.context(owner, length),
        )
        check_capacity(request)
        state, _ = await call.uploads.create(new)
        call.offset = 0
        if has_body or length == 0 or complete:
            state = await _append(call, state.id, owner, 0, body_size, complete=bool(complete))
    except UploadError as exc:
        return call.failed(exc)
    response = call.answer(201, state)
    response.headers["Location"] = f"{FILES_PATH}{state.id}"
    return response


async def upload_resource(request: Request) -> Response:
    """`/files/{id}`: HEAD, PATCH, DELETE (and POST with X-HTTP-Method-Override)."""
    method = request.method
    override = request.headers.get("x-http-method-override", "").upper()
    if method == "POST" and override in ("PATCH", "DELETE", "HEAD"):
        method = override
    if method == "OPTIONS":
        return options(request)
    upload_id: str = request.path_params["upload_id"]
    call = ResumableRequest(request)
    try:
        if method == "GET":
            return await _get(call, upload_id)
        owner = call.admit()
        if method == "HEAD":
            return await _head(call, upload_id, owner)
        if method == "DELETE":
            await call.uploads.terminate(upload_id, owner, call.context(owner, None))
            call.log(204, upload_id, "")
            return Response(status_code=204, headers=call.protocol.headers())
        if method != "PATCH":
            return call.failed(UploadError(f"{method} is not a method of an upload"), upload_id)
        return await _patch(call, upload_id, owner)
    except UploadError as exc:
        return call.failed(exc, upload_id)


async def _get(call: ResumableRequest, upload_id: str) -> Response:
    """GET: the upload as JSON (the creation's answer, with the stored `object` once it is
    complete), for clients whose last append answered without a body (tus's 204)."""
    headers = call.request.headers
    if "tus-resumable" in headers or "upload-draft-interop-version" in headers:
        call.protocol = proto.protocol_of(headers)
    owner = check_bearer(headers, call.settings.bearer_tokens)
    state = await call.uploads.status(upload_id, owner, call.context(owner, None))
    response = call.answer(200, state)
    response.headers["Cache-Control"] = "no-store"
    return response


async def _head(call: ResumableRequest, upload_id: str, owner: str | None) -> Response:
    state = await call.uploads.status(upload_id, owner, call.context(owner, None))
    if state.completed is None and state.offset > 0:
        metrics.RESUMABLE.labels("resumed").inc()
    headers = call.upload_headers(state)
    headers["Cache-Control"] = "no-store"
    if call.protocol.is_tus and state.metadata:
        headers["Upload-Metadata"] = state.metadata
    call.log(200, upload_id, "")
    return Response(status_code=200 if call.protocol.is_tus else 204, headers=headers)


async def _patch(call: ResumableRequest, upload_id: str, owner: str | None) -> Response:
    headers = call.request.headers
    offset = proto.integer(headers, "upload-offset")
    if offset is None:
        raise InvalidUploadHeader("an append carries Upload-Offset")
    complete = None
    if not call.protocol.is_tus:
        complete = proto.upload_complete(headers)
        if complete is None:
            raise InvalidUploadHeader("an append carries Upload-Complete: ?0 or ?1")
    call.protocol.check_body_type(headers.get("content-type"))
    body_size = call.body_size()
    check_capacity(call.request)
    state = await _append(call, upload_id, owner, offset, body_size, complete=bool(complete))
    if state.completed is not None and not call.protocol.is_tus:
        return call.answer(200, state)
    return call.answer(204, state)


async def _append(
    call: ResumableRequest,
    upload_id: str,
    owner: str | None,
    offset: int,
    body_size: int | None,
    *,
    complete: bool,
) -> ResumableState:
    """Hold the upload, check the request against it, and take the body into it."""
    uploads = call.uploads
    request = call.request
    async with uploads.holding(upload_id, owner) as held:
        state = held.state
        call.offset = _offset(state)
        _check_append(call, held, offset, body_size, complete)
        if state.completed is not None:
            return state  # tus: an empty append at the end of a complete upload
        checksum = proto.parse_checksum(request.headers.get("upload-checksum"))
        append = Append(
            uploads.storage, state, checksum=checksum, max_length=call.settings.max_body_bytes
        )
        request.app.state.uploads_running += 1
        metrics.UPLOADS_IN_FLIGHT.inc()
        try:
            await uploads.append(
                held,
                append,
                call.chunks(),
                complete=complete,
                checkpoints=checksum is None and body_size is not None,
                context=call.context(owner, body_size),
            )
        finally:
            call.offset = _offset(state)
            request.app.state.uploads_running -= 1
            metrics.UPLOADS_IN_FLIGHT.dec()
        return state


def _check_append(
    call: ResumableRequest, held: Held, offset: int, body_size: int | None, complete: bool
) -> None:
    state = held.state
    if state.completed is not None:
        if call.protocol.is_tus and offset == _offset(state) and not body_size:
            return
        raise UploadCompleted("the upload is complete: nothing more can be appended")
    if offset != state.offset:
        raise OffsetMismatch(
            f"Upload-Offset {offset} is not the upload's offset {state.offset}; "
            "HEAD the upload and resume from its offset"
        )
    if state.length is not None and body_size is not None:
        if offset + body_size > state.length:
            raise LengthExceeded(
                f"{body_size} bytes at offset {offset} go past the upload's length "
                f"{state.length}; none of them is kept"
            )
        if complete and offset + body_size != state.length:
            raise LengthMismatch(
                f"the upload would end at {offset + body_size} bytes, not at its length "
                f"{state.length}"
            )
