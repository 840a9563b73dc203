"""Errors the service answers with, each mapped to one status and one stable code.

Every error response has the body `{"error": {"code": "...", "message": "..."}}`.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response


class UploadError(Exception):
    """Base for errors that end an upload request with a JSON error response."""

    status_code = 400
    code = "bad_request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Unauthorized(UploadError):
    status_code = 401
    code = "unauthorized"


class UnsupportedMediaType(UploadError):
    status_code = 415
    code = "unsupported_media_type"


class MalformedMultipart(UploadError):
    status_code = 400
    code = "malformed_multipart"


class FileTypeNotAllowed(UploadError):
    status_code = 415
    code = "file_type_not_allowed"


class NoFile(UploadError):
    status_code = 400
    code = "no_file"


class TooManyFiles(UploadError):
    status_code = 400
    code = "too_many_files"


class TooManyParts(UploadError):
    status_code = 400
    code = "too_many_parts"


class InvalidDigest(UploadError):
    status_code = 400
    code = "invalid_digest"


class InvalidKey(UploadError):
    status_code = 400
    code = "invalid_key"


class KeyExists(UploadError):
    """UPLOAD_NO_OVERWRITE: an object already has the key (the store refused If-None-Match)."""

    status_code = 409
    code = "key_exists"


class DigestMismatch(UploadError):
    status_code = 422
    code = "digest_mismatch"


class TooManyFields(UploadError):
    status_code = 400
    code = "too_many_fields"


class FieldTooLarge(UploadError):
    status_code = 400
    code = "field_too_large"


class PartHeadersTooLarge(UploadError):
    status_code = 400
    code = "part_headers_too_large"


class BodyTooLarge(UploadError):
    status_code = 413
    code = "body_too_large"


class ClientGone(UploadError):
    """The client disconnected; the response is never seen but the upload is aborted."""

    status_code = 400
    code = "client_disconnected"


class IdleTimeout(UploadError):
    status_code = 408
    code = "idle_timeout"


class ShuttingDown(UploadError):
    status_code = 503
    code = "shutting_down"


class ServerBusy(UploadError):
    """UPLOAD_MAX_CONCURRENT uploads are running; answered before the body is read."""

    status_code = 503
    code = "server_busy"


class HookRefused(UploadError):
    """The pre-create hook answered 4xx: the client gets that status and the hook's message."""

    code = "hook_refused"

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code


class HookUnavailable(UploadError):
    """The pre-create hook timed out, answered 5xx or could not be reached (UPLOAD_HOOK_FAIL_OPEN
    is off)."""

    status_code = 503
    code = "hook_unavailable"


class HookInvalidAnswer(UploadError):
    """The pre-create hook allowed the upload with a key or metadata that cannot be used."""

    status_code = 502
    code = "hook_invalid_answer"


# --- resumable uploads (/files/) --------------------------------------------------------------


class UnsupportedProtocol(UploadError):
    """Neither tus 1.0.0 nor an IETF draft interop version this server speaks."""

    status_code = 412
    code = "unsupported_protocol"


class InvalidUploadHeader(UploadError):
    """A resumable-upload header is missing or malformed (Upload-Offset, Upload-Length...)."""

    status_code = 400
    code = "invalid_header"


class InvalidMetadata(UploadError):
    status_code = 400
    code = "invalid_metadata"


class UploadNotFound(UploadError):
    status_code = 404
    code = "upload_not_found"


class UploadExpired(UploadError):
    status_code = 410
    code = "upload_expired"


class OffsetMismatch(UploadError):
    """The request's Upload-Offset is not the upload's offset; the answer carries the right one."""

    status_code = 409
    code = "offset_mismatch"


class UploadLocked(UploadError):
    """Another request is appending to the same upload (tus: 423; the IETF drafts: 409)."""

    status_code = 423
    code = "upload_locked"
    upload_offset: int | None = None  # the upload's offset when it was refused, if read


class UploadCompleted(UploadError):
    status_code = 400
    code = "upload_completed"


class LengthMismatch(UploadError):
    """The upload's length, once recorded, cannot change."""

    status_code = 400
    code = "length_mismatch"


class LengthExceeded(UploadError):
    """Bytes past the upload's declared length: the request is discarded whole."""

    status_code = 413
    code = "upload_length_exceeded"


class UnsupportedChecksum(UploadError):
    status_code = 400
    code = "unsupported_checksum"


class ChecksumMismatch(UploadError):
    """tus's 460: the PATCH's bytes do not match its Upload-Checksum; none of them is kept."""

    status_code = 460
    code = "checksum_mismatch"


class StorageFailed(UploadError):
    status_code = 502
    code = "storage_error"


class IntegrityFailed(StorageFailed):
    """Storage answered with an ETag or checksum that does not match the bytes sent."""

    code = "integrity_error"


def error_response(
    status_code: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status_code, headers=headers
    )


_HTTP_CODES = {
    404: "not_found",
    405: "method_not_allowed",
}


async def http_exception_handler(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 (and any HTTPException) in our JSON error shape."""
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)


async def unexpected_error_handler(request: Request, exc: Exception) -> Response:
    """Last resort: a bug must still answer in the documented shape."""
    return error_response(500, "internal_error", "internal server error")
