"""app.page without a server: Accept negotiation and the escaping of the HTML answers."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from app.forms.upload import FormResult, StoredFile
from app.page import error_page, prefers_html, result_page
from app.storage import StoredObject

CHROME = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
    "image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"
)
FIREFOX = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def request(*accept: str) -> Request:
    headers = [(b"accept", value.encode()) for value in accept]
    return Request({"type": "http", "method": "POST", "headers": headers})


@pytest.mark.parametrize(
    ("accept", "html"),
    [
        ((CHROME,), True),
        ((FIREFOX,), True),
        (("text/html",), True),
        (("text/*, application/json;q=0.5",), True),
        (("TEXT/HTML",), True),
        # curl, httpx, XMLHttpRequest and fetch() send */*: a tie keeps the JSON answer.
        (("*/*",), False),
        ((), False),
        (("",), False),
        (("application/json",), False),
        (("application/json, text/html",), False),
        (("text/html;q=0.5, application/json",), False),
        (("text/html;q=0, */*",), False),
        (("text/html;q=oops, */*;q=0.1",), False),
        (("application/json;q=0.1", "text/html"), True),  # the header sent twice
    ],
)
def test_prefers_html(accept: tuple[str, ...], html: bool) -> None:
    assert prefers_html(request(*accept)) is html


def test_result_page_escapes_what_the_client_sent() -> None:
    stored = StoredObject(
        key="uploads/k/script_alert_x_script_.txt",
        size=3,
        sha256="ab" * 32,
        content_type="text/plain",
        strategy="single",
        parts=1,
    )
    answer = result_page(
        FormResult(
            files=[StoredFile("file", '<script>alert("x")</script>.txt', stored)],
            fields={"title": "<b>bold</b> & co", "tag": ["<i>", "x"]},
        )
    )
    page = bytes(answer.body).decode()
    assert answer.status_code == 201
    assert "<script>" not in page and "<b>" not in page and "<i>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;.txt" in page
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; co" in page
    assert "&lt;i&gt;, x" in page
    assert "ab" * 32 in page
    assert "script-src" not in answer.headers["content-security-policy"]
    assert "default-src 'none'" in answer.headers["content-security-policy"]


def test_error_page_keeps_status_and_headers() -> None:
    answer = error_page(401, "unauthorized", "no <token>", headers={"WWW-Authenticate": "Bearer"})
    page = bytes(answer.body).decode()
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    assert "unauthorized" in page and "no &lt;token&gt;" in page
    assert '<a href="/">' in page
