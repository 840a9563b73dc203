"""HTTP endpoints: the upload itself, health and readiness.

`POST /uploads` runs in three steps:
1. admission (`_admit`): the bearer token, the declared size, the Content-Type and the number
   of uploads running are all judged from the headers, before a byte of the body is read, so
   a client that sent `Expect: 100-continue` is refused without sending its body;
2. the body loop (`_receive`): each chunk, within the idle timeout and the size limit, is
   parsed and its events streamed into storage; the files are committed once the body ended
   cleanly, and undone otherwise;
3. the outcome (`Outcome`): one log line, the metrics, and the answer (JSON, or HTML for a
   browser), for a stored form and a failed one alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from app import metrics, page
from app.auth import check_bearer
from app.body import body_chunks
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
from app.forms.upload import FormResult, FormUpload
from app.hooks.events import UploadContext
from app.hooks.uploads import UploadHooks
from app.lingering import LingeringResponse, waits_for_continue
from app.settings import Settings
from app.storage import S3Client

logger = logging.getLogger("app.endpoints")


async def upload(request: Request) -> Response:
    """POST /uploads: stream every file of a multipart form into storage."""
    outcome = Outcome(request)
    try:
        form, body_size, outcome.uploader = _admit(request)
    except UploadError as exc:
        return outcome.failed(exc)
    request.app.state.uploads_running += 1
    metrics.UPLOADS_IN_FLIGHT.inc()
    try:
        return await _receive(request, form, body_size, outcome)
    finally:
        request.app.state.uploads_running -= 1
        metrics.UPLOADS_IN_FLIGHT.dec()


def _admit(request: Request) -> tuple[MultipartStream, int | None, str | None]:
    """The parser for this request's body, its declared size and who uploads (the token's
    name, None when no tokens are set), if the headers allow the body to be read; otherwise
    the UploadError that refuses it."""
    settings: Settings = request.app.state.settings
    uploader = check_bearer(request.headers, settings.bearer_tokens)
    body_size = content_length(request)
    limit = settings.max_body_bytes
    if limit and body_size is not None and body_size > limit:
        raise BodyTooLarge(f"the body is larger than the limit of {limit} bytes")
    form = MultipartStream(request.headers, max_part_header_bytes=settings.max_part_header_bytes)
    check_capacity(request)
    return form, body_size, uploader


def check_capacity(request: Request) -> None:
    """UPLOAD_MAX_CONCURRENT: 503 when this process already takes as many uploads (form
    uploads and resumable appends alike)."""
    settings: Settings = request.app.state.settings
    running = request.app.state.uploads_running
    if settings.max_concurrent and running >= settings.max_concurrent:
        metrics.UPLOADS_REFUSED.inc()
        raise ServerBusy(
            f"{running} uploads are in progress, the most this server takes; retry shortly"
        )


def content_length(request: Request) -> int | None:
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


async def _receive(
    request: Request, form: MultipartStream, body_size: int | None, outcome: Outcome
) -> Response:
    """Read the body into storage, then commit; on any failure undo and answer the error.

    With hooks (app/hooks/), each file is asked of pre-create before its first byte is
    stored, and a post-finish or post-abort is recorded before the answer."""
    settings: Settings = request.app.state.settings
    storage: S3Client = request.app.state.storage
    hooks: UploadHooks | None = request.app.state.hooks
    context = outcome.context(body_size)
    limit = settings.max_body_bytes
    pre_create = hooks.pre_create_for(context) if hooks else None
    files = FormUpload(storage, settings, body_size=body_size, pre_create=pre_create)
    try:
        async for chunk in body_chunks(request.receive, settings.idle_timeout):
            offset = outcome.received
            outcome.received += len(chunk)
            metrics.BYTES_RECEIVED.inc(len(chunk))
            if limit and outcome.received > limit:
                raise BodyTooLarge(f"the body is larger than the limit of {limit} bytes")
            for event in form.feed(chunk):
                await files.handle(event, offset)
        outcome.body_ended = True
        for event in form.finish():
            await files.handle(event, outcome.received)
        result = await files.commit()
    except (UploadError, ClientDisconnect, asyncio.CancelledError) as exc:
        failure = _as_upload_error(exc)
        outcome.client_stopped = isinstance(failure, ClientGone | IdleTimeout)
        try:
            await files.abort()
        except asyncio.CancelledError:
            # uvicorn's graceful-shutdown time ran out while the uploads were being undone
            # (that goes on: it is shielded). The connection is still open: answer.
            failure = _shut_down()
        if hooks:
            # A shutdown cut-off here leaves the record to finish on its own; answer anyway.
            with contextlib.suppress(asyncio.CancelledError):
                await hooks.aborted(context, failure.code, files.started_files())
        return outcome.failed(failure, undone=files.files_started)
    except BaseException:
        # A bug: undo the uploads, then let it propagate (it becomes a JSON 500).
        await files.abort()
        metrics.UPLOADS.labels("failed", "internal_error").inc()
        metrics.ABORTS.labels("internal_error").inc(files.files_started)
        if hooks:
            await hooks.aborted(context, "internal_error", files.started_files())
        raise
    if hooks:
        # The files are stored whatever happens to this task now: a shutdown cut-off here
        # still gets the 201 (the record finishes on its own).
        with contextlib.suppress(asyncio.CancelledError):
            await hooks.finished(context, _answer(result))
    return outcome.stored(result)


def _as_upload_error(exc: UploadError | ClientDisconnect | asyncio.CancelledError) -> UploadError:
    if isinstance(exc, ClientDisconnect):
        return ClientGone("the client disconnected before the body was complete")
    if isinstance(exc, asyncio.CancelledError):
        # uvicorn cancels requests still running when its graceful-shutdown time is up. The
        # connection is still open: answer in our JSON shape rather than uvicorn's plain 500
        # (the client may retry against another instance).
        return _shut_down()
    return exc


def _shut_down() -> ShuttingDown:
    return ShuttingDown("the server shut down before the upload finished; retry it")


def request_id(request: Request) -> str:
    """nginx's X-Request-ID when there is one (so its log and ours join), else our own."""
    given = request.headers.get("x-request-id", "")
    if given and len(given) <= 200 and given.isprintable():
        return given
    return uuid.uuid4().hex


class Outcome:
    """How one upload request ended: its log line, its metrics and its answer."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self.started = time.monotonic()
        self.received = 0  # body bytes read
        self.body_ended = False  # the whole body was read
        self.uploader: str | None = None  # the token's name, once admitted
        self.request_id = request_id(request)
        self.client_stopped = False  # went away or stalled: no more of the body is coming

    def stored(self, result: FormResult) -> Response:
        """Count and log a stored form, and answer with what was stored."""
        metrics.UPLOADS.labels("stored", "").inc()
        for file in result.files:
            metrics.BYTES_STORED.inc(file.stored.size)
            metrics.OBJECTS_STORED.labels(file.stored.strategy).inc()
        seconds = self._seconds()
        logger.info(
            "upload stored: client=%s files=%d bytes=%d seconds=%.3f",
            self._client(),
            len(result.files),
            self.received,
            seconds,
            extra={
                "fields": {
                    "request_id": self.request_id,
                    "client": self._client(),
                    "uploader": self.uploader,
                    "outcome": "stored",
                    "status": 201,
                    "bytes": self.received,
                    "seconds": round(seconds, 3),
                    "files": [
                        {"key": f.stored.key, "size": f.stored.size, "parts": f.stored.parts}
                        for f in result.files
                    ],
                }
            },
        )
        if page.prefers_html(self.request):
            return page.result_page(result, status_code=201)  # a form posted without JavaScript
        return JSONResponse(_answer(result), status_code=201)

    def failed(self, exc: UploadError, *, undone: int = 0) -> Response:
        """Count and log a failed upload (the `undone` objects it began were aborted), and
        answer with its error."""
        metrics.UPLOADS.labels("failed", exc.code).inc()
        if undone:
            metrics.ABORTS.labels(exc.code).inc(undone)
        log = logger.error if isinstance(exc, StorageFailed) else logger.info
        seconds = self._seconds()
        log(
            "upload failed: client=%s code=%s status=%d bytes=%d seconds=%.3f message=%s",
            self._client(),
            exc.code,
            exc.status_code,
            self.received,
            seconds,
            exc.message,
            extra={
                "fields": {
                    "request_id": self.request_id,
                    "client": self._client(),
                    "uploader": self.uploader,
                    "outcome": "failed",
                    "status": exc.status_code,
                    "code": exc.code,  # also the abort reason: every upload it began is undone
                    "bytes": self.received,
                    "seconds": round(seconds, 3),
                }
            },
        )
        headers = self._error_headers(exc)
        answer: Response
        if page.prefers_html(self.request):
            answer = page.error_page(exc.status_code, exc.code, exc.message, headers=headers)
        else:
            answer = error_response(exc.status_code, exc.code, exc.message, headers=headers)
        return self._delivered(answer)

    def _delivered(self, answer: Response) -> Response:
        """`answer`, sent so that it reaches a client still sending its body (app/lingering.py)."""
        if self.body_ended or self.client_stopped:
            return answer  # nothing more is coming
        if self.received == 0 and waits_for_continue(self.request):
            return answer  # no body is coming: the client waits to be asked for it
        settings: Settings = self.request.app.state.settings
        return LingeringResponse(
            answer, seconds=settings.linger_seconds, max_bytes=settings.linger_bytes
        )

    def _error_headers(self, exc: UploadError) -> dict[str, str]:
        # With the body not all read, the connection is not reused: what is left of it is
        # read and dropped for a bounded time only.
        headers = {} if self.body_ended else {"Connection": "close"}
        if isinstance(exc, ShuttingDown | ServerBusy):
            headers = {"Connection": "close", "Retry-After": "5"}
        if isinstance(exc, Unauthorized):
            headers["WWW-Authenticate"] = "Bearer"
        return headers

    def context(self, declared_size: int | None) -> UploadContext:
        """Who sends this upload, as its hooks tell it (never the token)."""
        return UploadContext(self.uploader, self._client(), self.request_id, declared_size)

    def _seconds(self) -> float:
        return time.monotonic() - self.started

    def _client(self) -> str:
        return self.request.client.host if self.request.client else "-"


def _answer(result: FormResult) -> dict[str, Any]:
    """The JSON answer to a stored form: what clients and the upload page's script read."""
    return {
        "files": [
            {
                "field": file.field,
                "filename": file.filename,
                "key": file.stored.key,
                "size": file.stored.size,
                "content_type": file.stored.content_type,
                "sha256": file.stored.sha256,
                "strategy": file.stored.strategy,
                "parts": file.stored.parts,
            }
            for file in result.files
        ],
        "fields": result.fields,
    }


async def auth(request: Request) -> Response:
    """GET /auth: 204 when the request's token may upload, else 401 (for nginx auth_request)."""
    settings: Settings = request.app.state.settings
    try:
        check_bearer(request.headers, settings.bearer_tokens)
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
