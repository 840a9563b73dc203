"""HTTP endpoints: the upload itself, health and readiness."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from app import metrics, page
from app.auth import check_bearer
from app.errors import (
    BodyTooLarge,
    ClientGone,
    IdleTimeout,
    MalformedMultipart,
    ServerBusy,
    ShuttingDown,
    StorageFailed,
    Unauthorized,
    UploadError,
    error_response,
)
from app.forms.multipart import MultipartStream
from app.forms.upload import FormUpload
from app.settings import Settings
from app.storage.client import S3Client

logger = logging.getLogger("app.endpoints")


def _content_length(request: Request) -> int | None:
    raw = request.headers.get("content-length")
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise MalformedMultipart("Content-Length is not a number") from None
    if value < 0:
        raise MalformedMultipart("Content-Length is negative")
    return value


async def upload(request: Request) -> Response:
    """POST /uploads: stream every file of a multipart form into storage."""
    settings: Settings = request.app.state.settings
    started = time.monotonic()
    limit = settings.max_body_bytes
    try:
        check_bearer(request.headers, settings.auth_tokens)
        body_size = _content_length(request)
        if limit and body_size is not None and body_size > limit:
            # Refused before reading, so an `Expect: 100-continue` client sends nothing.
            raise BodyTooLarge(f"the body is larger than the limit of {limit} bytes")
        form = MultipartStream(
            request.headers, max_part_header_bytes=settings.max_part_header_bytes
        )
        running = request.app.state.uploads_running
        if settings.max_concurrent and running >= settings.max_concurrent:
            metrics.UPLOADS_REFUSED.inc()
            raise ServerBusy(
                f"{running} uploads are in progress, the most this server takes; retry shortly"
            )
    except UploadError as exc:
        return _failed(request, exc, received=0, started=started)

    request.app.state.uploads_running += 1
    metrics.UPLOADS_IN_FLIGHT.inc()
    try:
        return await _receive(request, form, body_size, started)
    finally:
        request.app.state.uploads_running -= 1
        metrics.UPLOADS_IN_FLIGHT.dec()


async def _receive(
    request: Request, form: MultipartStream, body_size: int | None, started: float
) -> Response:
    """Read the body into storage, then commit; on any failure undo and answer the error."""
    settings: Settings = request.app.state.settings
    storage: S3Client = request.app.state.storage
    limit = settings.max_body_bytes
    files = FormUpload(storage, settings, body_size=body_size)
    received = 0
    try:
        async for chunk in _with_idle_timeout(request, settings.idle_timeout):
            offset = received
            received += len(chunk)
            metrics.BYTES_RECEIVED.inc(len(chunk))
            if limit and received > limit:
                raise BodyTooLarge(f"the body is larger than the limit of {limit} bytes")
            for event in form.feed(chunk):
                await files.handle(event, offset)
        for event in form.finish():
            await files.handle(event, received)
        result = await files.commit()
    except UploadError as exc:
        await files.abort()
        return _failed(request, exc, received=received, started=started, objects=len(files.files))
    except ClientDisconnect:
        await files.abort()
        gone = ClientGone("the client disconnected before the body was complete")
        return _failed(request, gone, received=received, started=started, objects=len(files.files))
    except asyncio.CancelledError:
        # uvicorn cancels requests still running when its graceful-shutdown time is up.
        # Undo the uploads, and answer in our JSON shape rather than uvicorn's plain 500
        # (the connection is still open; the client may retry against another instance).
        await files.abort()
        return _failed(
            request,
            ShuttingDown("the server shut down before the upload finished; retry it"),
            received=received,
            started=started,
            objects=len(files.files),
        )
    except BaseException:
        # A bug: undo the uploads, then let it propagate (it becomes a JSON 500).
        await files.abort()
        metrics.UPLOADS.labels("failed", "internal_error").inc()
        metrics.ABORTS.labels("internal_error").inc(len(files.files))
        raise
    seconds = time.monotonic() - started
    metrics.UPLOADS.labels("stored", "").inc()
    for stored in result["files"]:
        metrics.BYTES_STORED.inc(stored["size"])
        metrics.OBJECTS_STORED.labels(stored["strategy"]).inc()
    logger.info(
        "upload stored: client=%s files=%d bytes=%d seconds=%.3f",
        _client(request),
        len(result["files"]),
        received,
        seconds,
        extra={
            "fields": {
                "request_id": _request_id(request),
                "client": _client(request),
                "outcome": "stored",
                "status": 201,
                "bytes": received,
                "seconds": round(seconds, 3),
                "files": [
                    {"key": f["key"], "size": f["size"], "parts": f["parts"]}
                    for f in result["files"]
                ],
            }
        },
    )
    if page.prefers_html(request):
        return page.result_page(result, status_code=201)  # a form posted without JavaScript
    return JSONResponse(result, status_code=201)


async def _with_idle_timeout(request: Request, seconds: float) -> AsyncIterator[bytes]:
    """The body's chunks; a client silent for `seconds` ends the upload (IdleTimeout).

    uvicorn has no read timeout for request bodies, so without this a trickling client would
    hold a part buffer and an open multipart upload for as long as it likes.
    """
    chunks = request.stream().__aiter__()
    while True:
        try:
            if seconds:
                async with asyncio.timeout(seconds):
                    chunk = await anext(chunks)
            else:
                chunk = await anext(chunks)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise IdleTimeout(f"no body bytes for {seconds:g} s; upload aborted") from None
        yield chunk


def _failed(
    request: Request, exc: UploadError, *, received: int, started: float, objects: int = 0
) -> Response:
    """Log and count a failed upload (its `objects` were undone) and build its answer."""
    metrics.UPLOADS.labels("failed", exc.code).inc()
    if objects:
        metrics.ABORTS.labels(exc.code).inc(objects)
    log = logger.error if isinstance(exc, StorageFailed) else logger.info
    seconds = time.monotonic() - started
    log(
        "upload failed: client=%s code=%s status=%d bytes=%d seconds=%.3f message=%s",
        _client(request),
        exc.code,
        exc.status_code,
        received,
        seconds,
        exc.message,
        extra={
            "fields": {
                "request_id": _request_id(request),
                "client": _client(request),
                "outcome": "failed",
                "status": exc.status_code,
                "code": exc.code,  # also the abort reason: every upload it began is undone
                "bytes": received,
                "seconds": round(seconds, 3),
            }
        },
    )
    # The body may be unread: close the connection rather than drain gigabytes.
    headers = {"Connection": "close"} if received == 0 or exc.status_code == 413 else {}
    if isinstance(exc, ShuttingDown | ServerBusy):
        headers = {"Connection": "close", "Retry-After": "5"}
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    if page.prefers_html(request):
        return page.error_page(exc.status_code, exc.code, exc.message, headers=headers)
    return error_response(exc.status_code, exc.code, exc.message, headers=headers)


def _request_id(request: Request) -> str:
    """nginx's X-Request-ID when there is one (so its log and ours join), else our own."""
    given = request.headers.get("x-request-id", "")
    if given and len(given) <= 200 and given.isprintable():
        return given
    return uuid.uuid4().hex


def _client(request: Request) -> str:
    return request.client.host if request.client else "-"


async def auth(request: Request) -> Response:
    """GET /auth: 204 when the request's token may upload, else 401 (for nginx auth_request)."""
    settings: Settings = request.app.state.settings
    try:
        check_bearer(request.headers, settings.auth_tokens)
    except Unauthorized as exc:
        return error_response(
            exc.status_code, exc.code, exc.message, headers={"WWW-Authenticate": "Bearer"}
        )
    return Response(status_code=204)


async def healthz(request: Request) -> Response:
    """The process is serving."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """The bucket answers: this instance can take uploads."""
    storage: S3Client = request.app.state.storage
    try:
        await asyncio.wait_for(storage.ping(), timeout=5)
    except (StorageFailed, TimeoutError) as exc:
        message = exc.message if isinstance(exc, StorageFailed) else "storage did not answer"
        return error_response(503, "storage_unavailable", message)
    return JSONResponse({"status": "ready"})
