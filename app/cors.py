"""Cross-origin requests: a page on another origin (`app.example.com`) uploading here.

Starlette's own CORSMiddleware does the work, configured from `UPLOAD_CORS_ORIGINS`; with no
origins listed there is no middleware at all, and only same-origin pages can read answers.
The shipped nginx config reads the same variable, so that its own answers (401, 413,
502, 504) carry the same headers (nginx/README.md).
"""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from app.settings import Settings

#: What a browser page may send: form uploads, and the resumable protocols' requests.
ALLOWED_METHODS = ("GET", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS")
#: Request headers a page may set beyond the CORS-safelisted ones.
ALLOWED_HEADERS = (
    "Authorization",
    "Content-Type",
    "X-Request-ID",
    "Tus-Resumable",
    "Upload-Length",
    "Upload-Defer-Length",
    "Upload-Metadata",
    "Upload-Offset",
    "Upload-Checksum",
    "Upload-Concat",
    "Upload-Complete",
    "Upload-Draft-Interop-Version",
    "X-HTTP-Method-Override",
)
#: Response headers a page's script may read, each by name.
EXPOSED_HEADERS = (
    "Location",
    "Upload-Offset",
    "Upload-Length",
    "Upload-Expires",
    "Upload-Complete",
    "Upload-Limit",
    "Tus-Resumable",
    "Tus-Version",
    "Tus-Max-Size",
    "Tus-Extension",
    "X-Request-ID",
    "Retry-After",
    "WWW-Authenticate",
)


def cors_middleware(settings: Settings) -> list[Middleware]:
    """The CORS middleware for `settings`, or none when no origin is allowed."""
    if not settings.cors_origins:
        return []
    return [
        Middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=list(ALLOWED_METHODS),
            allow_headers=list(ALLOWED_HEADERS),
            expose_headers=list(EXPOSED_HEADERS),
            allow_credentials=settings.cors_credentials,
            max_age=settings.cors_max_age,
        )
    ]
