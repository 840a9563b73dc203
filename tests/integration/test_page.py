"""The upload page and its assets, and POST /uploads answering browsers in HTML, in-process
against moto: curl, httpx and scripts (Accept `*/*`) keep getting JSON."""

from __future__ import annotations

import html
from collections.abc import Callable

import httpx
import pytest

from app.client.formbody import FormField
from app.settings import Settings
from harness.forms import FilePart, content_type, multipart_body
from harness.store import Bucket, sha256
from tests.integration.conftest import app_client

pytestmark = pytest.mark.anyio

BROWSER = {"accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
TOKEN = "page-test-token-0123456789abcdef"


async def post_form(
    http: httpx.AsyncClient, parts: list[FilePart | FormField], **headers: str
) -> httpx.Response:
    return await http.post(
        "/uploads",
        content=multipart_body(parts),
        headers={"content-type": content_type(), **headers},
    )


async def test_index_serves_the_form_with_a_strict_csp(client: httpx.AsyncClient) -> None:
    answer = await client.get("/")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    csp = answer.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert answer.headers["x-content-type-options"] == "nosniff"
    page = answer.text
    assert (
        '<form id="upload-form" method="post" action="/uploads" '
        'enctype="multipart/form-data">' in page
    )
    # The title comes before the file input, so a plain form posts it first.
    assert page.index('name="title"') < page.index('name="file"')
    assert '<script src="/static/upload.js" defer></script>' in page
    # resumable.js defines what upload.js uses for large files: it runs first.
    assert page.index("/static/resumable.js") < page.index("/static/upload.js")
    assert "http://" not in page and "https://" not in page  # no external resources


@pytest.mark.parametrize(
    ("path", "media_type", "text"),
    [
        ("/static/upload.js", "javascript", '"use strict";'),
        ("/static/resumable.js", "javascript", '"use strict";'),
        ("/static/style.css", "text/css", "#drop-zone"),
    ],
)
async def test_static_assets(
    client: httpx.AsyncClient, path: str, media_type: str, text: str
) -> None:
    answer = await client.get(path)
    assert answer.status_code == 200
    assert media_type in answer.headers["content-type"]
    assert text in answer.text
    assert "innerHTML" not in answer.text


async def test_unknown_asset_is_404(client: httpx.AsyncClient) -> None:
    answer = await client.get("/static/nope.js")
    assert answer.status_code == 404


async def test_browser_gets_an_html_result_page(client: httpx.AsyncClient, bucket: Bucket) -> None:
    data = b"hello from a browser\n"
    parts: list[FilePart | FormField] = [
        FormField("title", "<b>trip</b> & more"),
        FilePart("file", "<script>alert(1)</script>.txt", data, "text/plain"),
    ]
    answer = await post_form(client, parts, **BROWSER)
    assert answer.status_code == 201
    assert answer.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in answer.headers["content-security-policy"]
    page = answer.text
    assert "<script>" not in page and "<b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.txt" in page
    assert "&lt;b&gt;trip&lt;/b&gt; &amp; more" in page
    assert sha256(data) in page
    assert '<a href="/">' in page
    (key,) = bucket.keys()
    assert html.escape(key) in page  # the key keeps the filename's last `>`
    assert bucket.read(key) == data
    assert bucket.incomplete_uploads() == []


async def test_browser_gets_an_html_error_page(client: httpx.AsyncClient, bucket: Bucket) -> None:
    answer = await post_form(client, [FormField("title", "no file here")], **BROWSER)
    assert answer.status_code == 400
    assert answer.headers["content-type"].startswith("text/html")
    assert "no_file" in answer.text
    assert "the form has no file" in answer.text
    assert '<a href="/">' in answer.text
    bucket.assert_clean()


async def test_html_error_keeps_the_error_headers(
    settings_for: Callable[..., Settings], bucket: Bucket
) -> None:
    async with app_client(settings_for(auth_tokens=(TOKEN,))) as http:
        answer = await post_form(http, [FilePart("file", "a.txt", b"x")], **BROWSER)
    assert answer.status_code == 401
    assert answer.headers["content-type"].startswith("text/html")
    assert answer.headers["www-authenticate"] == "Bearer"
    assert "unauthorized" in answer.text
    bucket.assert_clean()


@pytest.mark.parametrize("accept", ["*/*", "", "application/json"])  # httpx's, curl's: */*
async def test_scripts_keep_getting_json(
    client: httpx.AsyncClient, bucket: Bucket, accept: str
) -> None:
    headers = {"accept": accept}
    data = b"json please"
    answer = await post_form(client, [FilePart("file", "a.txt", data)], **headers)
    assert answer.status_code == 201
    assert answer.headers["content-type"] == "application/json"
    bucket.assert_intact(answer.json()["files"][0], data)

    failed = await post_form(client, [FormField("title", "x")], **headers)
    assert failed.status_code == 400
    assert failed.json() == {
        "error": {
            "code": "no_file",
            "message": "the form has no file (send one part with a filename)",
        }
    }
