"""The browser side: the upload page at `/`, and HTML answers for forms posted without JS.

Why here and not in a frontend project: the page is three small static files (no build step)
and the only server logic a browser needs is content negotiation. With JavaScript the page
posts each file on its own XMLHttpRequest (progress, cancel) and reads the JSON answers like
any script would. Without JavaScript the page is a plain `<form>`, and the browser shows
whatever `POST /uploads` answers: so when a request's `Accept` header ranks `text/html` above
`application/json` (a browser navigating; never `curl` or httpx, which send `*/*`), the
endpoint answers with the pages built here instead of JSON, with the same status code.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles

from app.forms.upload import FormResult
from app.units import MiB

STATIC_DIR = Path(__file__).parent / "static"
# Read at import: a wheel built without its package data fails at start-up, not on a visit.
_INDEX_HTML = (STATIC_DIR / "index.html").read_text(encoding="utf-8")

# Everything the page uses comes from this origin; nothing may frame it or post it elsewhere.
_PAGE_CSP = (
    "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; "
    "object-src 'none'"
)
# The answer pages echo filenames and fields: no script at all, only our stylesheet.
_ANSWER_CSP = (
    "default-src 'none'; style-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
_COMMON_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


def static_files() -> StaticFiles:
    """`/static/*`: index.html's script and stylesheet, shipped as package data."""
    return StaticFiles(directory=STATIC_DIR)


async def index(request: Request) -> Response:
    """GET /: the upload page."""
    headers = {
        **_COMMON_HEADERS,
        "Content-Security-Policy": _PAGE_CSP,
        "Cache-Control": "no-cache",
    }
    return HTMLResponse(_INDEX_HTML, headers=headers)


def prefers_html(request: Request) -> bool:
    """Whether the client ranks `text/html` strictly above `application/json` in `Accept`.

    A tie (`*/*`, or no header) means JSON: scripts and `curl` keep the documented answer.
    """
    accept = ",".join(request.headers.getlist("accept"))
    return _quality(accept, "text/html") > _quality(accept, "application/json")


def _quality(accept: str, media_type: str) -> float:
    """The q-value `accept` gives `media_type`: its most specific matching range wins."""
    kind = media_type.split("/", 1)[0]
    best_specificity, best_q = -1, 0.0
    for item in accept.split(","):
        media_range, *params = (piece.strip() for piece in item.split(";"))
        media_range = media_range.lower()
        if media_range == media_type:
            specificity = 2
        elif media_range == f"{kind}/*":
            specificity = 1
        elif media_range == "*/*":
            specificity = 0
        else:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0  # a range we cannot read must not outrank a clear one
        if specificity > best_specificity:
            best_specificity, best_q = specificity, q
    return best_q


def result_page(result: FormResult, *, status_code: int = 201) -> HTMLResponse:
    """The HTML answer to a stored form: the same facts as the JSON answer, escaped.

    Laid out like upload.js's result list (same classes), so one stylesheet serves both.
    """
    files = [
        (
            f"<li class=upload><span class=name>{_text(f.filename)}</span><dl class=result>"
            f"<dt>Key</dt><dd class=key>{_text(f.stored.key)}</dd>"
            f"<dt>Size</dt><dd class=size>{_text(_size(f.stored.size))}</dd>"
            f"<dt>Type</dt><dd class=type>{_text(f.stored.content_type)}</dd>"
            f"<dt>SHA-256</dt><dd class=sha256>{_text(f.stored.sha256)}</dd>"
            "</dl></li>"
        )
        for f in result.files
    ]
    fields = [
        f"<tr><th>{_text(name)}</th><td>{_text(_joined(value))}</td></tr>"
        for name, value in result.fields.items()
    ]
    body = (
        f"<p class=ok>Stored {len(files)} file{'s' if len(files) != 1 else ''}.</p>"
        "<ul id=uploads>" + "".join(files) + "</ul>"
    )
    if fields:
        body += "<h2>Fields</h2><table class=fields>" + "".join(fields) + "</table>"
    return _answer("Upload stored", body, status_code)


def error_page(
    status_code: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> HTMLResponse:
    """The HTML answer to a failed form: the JSON error's code and message."""
    body = (
        f"<p class=error><strong>{_text(code)}</strong> (HTTP {status_code})</p>"
        f"<p>{_text(message)}</p>"
    )
    return _answer("Upload failed", body, status_code, headers)


def _answer(
    title: str, body: str, status_code: int, headers: Mapping[str, str] | None = None
) -> HTMLResponse:
    page = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f'<title>{title}</title><link rel=stylesheet href="/static/style.css"></head>'
        f'<body><main><h1>{title}</h1>{body}<p><a href="/">Back to the upload page</a></p></main>'
        "</body></html>"
    )
    all_headers = {**_COMMON_HEADERS, "Content-Security-Policy": _ANSWER_CSP, **(headers or {})}
    return HTMLResponse(page, status_code=status_code, headers=all_headers)


def _size(size: int) -> str:
    # As upload.js's formatSize, so both pages read alike.
    return f"{size / MiB:.1f} MiB ({size} bytes)" if size >= MiB else f"{size} bytes"


def _joined(value: str | list[str]) -> str:
    return ", ".join(value) if isinstance(value, list) else value


def _text(value: object) -> str:
    return html.escape(str(value), quote=True)
