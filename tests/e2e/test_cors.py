"""A page on another origin uploads with `fetch`, in headless Chromium: to the app directly
and through the shipped nginx config, whose preflights reach the app without the token check
and whose own answers (401, 413) carry the same CORS headers. A page on an origin that is not
listed is stopped by the browser itself, before its upload is sent."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from harness.nginx import Nginx
from harness.processes import free_port
from harness.store import Bucket, MiB
from tests.e2e.conftest import Capture, StartApp, StartNginx

if TYPE_CHECKING:
    from playwright.sync_api import Page

TOKEN = "cors-token-0123456789abcdef"

#: fetch() with a FormData of one generated file, in the page; what the page could read.
UPLOAD = """async ({url, token, size}) => {
    const bytes = new Uint8Array(size);
    for (let i = 0; i < size; i++) bytes[i] = i % 251;
    const form = new FormData();
    form.append("file", new Blob([bytes], {type: "application/octet-stream"}), "from-page.bin");
    try {
        const response = await fetch(url, {
            method: "POST", body: form, headers: {Authorization: `Bearer ${token}`},
        });
        return {
            status: response.status,
            body: await response.json(),
            requestId: response.headers.get("X-Request-ID"),
        };
    } catch (error) {
        return {error: `${error.name}: ${error.message}`};
    }
}"""


def generated(size: int) -> bytes:
    return bytes(i % 251 for i in range(size))


@pytest.fixture
def origins() -> Iterator[tuple[Capture, Capture]]:
    """Two applications' origins, each an empty page on its own loopback port: one listed
    in UPLOAD_CORS_ORIGINS, one not."""
    allowed, other = Capture(), Capture()
    yield allowed, other
    allowed.stop()
    other.stop()


def origin_of(server: Capture) -> str:
    return server.url.rstrip("/")


def upload_from(page: Page, origin: Capture, url: str, token: str, size: int) -> Any:
    page.goto(origin.url)
    return page.evaluate(UPLOAD, {"url": url, "token": token, "size": size})


@pytest.mark.parametrize("route", ["direct", "shipped nginx"])
def test_a_page_on_a_listed_origin_uploads_with_fetch(
    route: str,
    bucket: Bucket,
    start_app: StartApp,
    start_nginx: StartNginx,
    new_page: Callable[..., Page],
    origins: tuple[Capture, Capture],
) -> None:
    allowed, other = origins
    cors = {"UPLOAD_CORS_ORIGINS": origin_of(allowed), "UPLOAD_AUTH_TOKENS": TOKEN}
    app = start_app(bucket, part_size=5 * MiB, env=cors)
    url = f"{app.url}/uploads"
    if route == "shipped nginx":
        url = f"{start_nginx([app.address], cors_origins=origin_of(allowed)).url}/uploads"
    page = new_page()

    size = 300_000
    answer = upload_from(page, allowed, url, TOKEN, size)
    assert answer.get("status") == 201, answer
    stored = answer["body"]["files"][0]
    assert stored["sha256"] == hashlib.sha256(generated(size)).hexdigest()
    assert bucket.sha256(stored["key"]) == stored["sha256"]
    if route == "shipped nginx":
        assert answer["requestId"]  # exposed by name, so the page can read it

    # A page on an origin that is not listed: the browser's preflight is refused, and the
    # upload itself is never sent.
    refused = upload_from(page, other, url, TOKEN, size)
    assert refused == {"error": "TypeError: Failed to fetch"}
    assert len(bucket.keys()) == 1


def test_nginx_s_own_refusals_are_readable_by_a_listed_origin(
    bucket: Bucket,
    start_app: StartApp,
    start_nginx: StartNginx,
    new_page: Callable[..., Page],
    origins: tuple[Capture, Capture],
) -> None:
    """auth_request's 401 and client_max_body_size's 413 never reach the app: nginx adds the
    CORS headers itself, for the origins the app allows."""
    allowed, other = origins
    cors = {"UPLOAD_CORS_ORIGINS": origin_of(allowed), "UPLOAD_AUTH_TOKENS": TOKEN}
    app = start_app(bucket, part_size=5 * MiB, env=cors)
    nginx: Nginx = start_nginx(
        [app.address], cors_origins=origin_of(allowed), client_max_body_size="1m"
    )
    url = f"{nginx.url}/uploads"
    page = new_page()

    answer = upload_from(page, allowed, url, "wrong-token-0123456789abcdef", 1000)
    assert (answer.get("status"), answer["body"]["error"]["code"]) == (401, "unauthorized")
    assert answer["requestId"]
    answer = upload_from(page, allowed, url, TOKEN, 2 * MiB)
    assert (answer.get("status"), answer["body"]["error"]["code"]) == (413, "body_too_large")

    assert upload_from(page, other, url, "wrong-token-0123456789abcdef", 1000) == {
        "error": "TypeError: Failed to fetch"
    }
    bucket.assert_clean()


@pytest.mark.parametrize(
    ("listed", "origin", "allowed"),
    [
        ("https://app.example.com", "https://app.example.com", "https://app.example.com"),
        (
            "https://a.example.com, https://app.example.com",
            "https://app.example.com",
            "https://app.example.com",
        ),
        ("https://app.example.com", "https://app.example.com.evil.org", None),
        ("https://app.example.com", "https://evil.org", None),
        ("*", "https://anywhere.example.org", "https://anywhere.example.org"),
        ("", "https://app.example.com", None),
    ],
)
def test_nginx_s_502_carries_cors_headers_for_listed_origins_only(
    start_nginx: StartNginx, listed: str, origin: str, allowed: str | None
) -> None:
    nginx = start_nginx([f"127.0.0.1:{free_port()}"], cors_origins=listed)  # no app there
    for method, path in [("GET", "/healthz"), ("POST", "/uploads")]:
        answer = httpx.request(method, f"{nginx.url}{path}", headers={"Origin": origin}, timeout=30)
        assert answer.status_code == 502
        assert answer.json()["error"]["code"] == "no_app_instance"
        assert answer.headers.get("access-control-allow-origin") == allowed
        assert ("access-control-expose-headers" in answer.headers) == (allowed is not None)
