"""What a failed S3 call says: its error code, and a short description fit for logs and answers."""

from __future__ import annotations

#: What S3 answers a refused If-None-Match (412), or a race with another write of the key (409).
KEY_EXISTS_CODES = {"PreconditionFailed", "ConditionalRequestConflict"}


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
