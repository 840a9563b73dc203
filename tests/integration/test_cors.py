"""CORS (app/cors.py) on the real app in-process: preflights for the headers browsers send,
the headers a page may read, and nothing at all for origins not listed or when none is."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from app.cors import EXPOSED_HEADERS
from app.settings import Settings
from harness.forms import FilePart, content_type, multipart_body
from harness.store import Bucket
from tests.integration.conftest import app_client

pytestmark = pytest.mark.anyio

PAGE = "https://app.example.com"
TOKEN = "cors-token-0123456789abcdef"


def preflight(origin: str, headers: str = "authorization, content-type") -> dict[str, str]:
    return {
        "origin": origin,
        "access-control-request-method": "POST",
        "access-control-request-headers": headers,
    }


async def test_a_listed_origin_gets_its_preflight_answered(
    settings_for: Callable[..., Settings],
) -> None:
    settings = settings_for(cors_origins=(PAGE,), auth_tokens=(TOKEN,))
    async with app_client(settings) as http:
        answer = await http.options("/uploads", headers=preflight(PAGE))
        tus = await http.options(
            "/files/", headers=preflight(PAGE, "tus-resumable, upload-length, upload-metadata")
        )
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == PAGE
    assert "POST" in answer.headers["access-control-allow-methods"]
    allowed = answer.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed
    assert answer.headers["access-control-max-age"] == "600"
    assert "access-control-allow-credentials" not in answer.headers
    assert tus.status_code == 200


async def test_an_origin_not_listed_gets_no_cors_headers(
    settings_for: Callable[..., Settings], bucket: Bucket
) -> None:
    settings = settings_for(cors_origins=(PAGE,))
    async with app_client(settings) as http:
        answer = await http.options("/uploads", headers=preflight("https://evil.example.com"))
        assert answer.status_code == 400
        assert "access-control-allow-origin" not in answer.headers
        upload = await post_form(http, "https://evil.example.com")
    # The request itself is served (CORS is the browser's to enforce), without the headers
    # that would let the page read the answer.
    assert upload.status_code == 201
    assert "access-control-allow-origin" not in upload.headers


async def post_form(http: httpx.AsyncClient, origin: str, **headers: str) -> httpx.Response:
    body = multipart_body([FilePart("file", "a.txt", b"hello")])
    return await http.post(
        "/uploads",
        content=body,
        headers={"origin": origin, "content-type": content_type(), **headers},
    )


async def test_answers_to_a_listed_origin_expose_the_headers_a_page_reads(
    settings_for: Callable[..., Settings], bucket: Bucket
) -> None:
    settings = settings_for(cors_origins=(PAGE, "http://localhost:8080"), auth_tokens=(TOKEN,))
    async with app_client(settings) as http:
        stored = await post_form(http, PAGE, authorization=f"Bearer {TOKEN}")
        refused = await post_form(http, PAGE)
    assert stored.status_code == 201
    assert refused.status_code == 401
    for answer in (stored, refused):
        assert answer.headers["access-control-allow-origin"] == PAGE
        exposed = [h.strip() for h in answer.headers["access-control-expose-headers"].split(",")]
        assert exposed == list(EXPOSED_HEADERS)
        assert "Origin" in answer.headers["vary"]


async def test_credentials_only_when_set(settings_for: Callable[..., Settings]) -> None:
    settings = settings_for(cors_origins=(PAGE,), cors_credentials=True)
    async with app_client(settings) as http:
        answer = await http.options("/uploads", headers=preflight(PAGE))
    assert answer.headers["access-control-allow-credentials"] == "true"


async def test_any_origin_with_a_star(
    settings_for: Callable[..., Settings], bucket: Bucket
) -> None:
    async with app_client(settings_for(cors_origins=("*",))) as http:
        answer = await post_form(http, "https://anywhere.example.org")
    assert answer.status_code == 201
    assert answer.headers["access-control-allow-origin"] == "*"


async def test_same_origin_only_by_default(
    settings_for: Callable[..., Settings], bucket: Bucket
) -> None:
    async with app_client(settings_for()) as http:
        answer = await http.options("/uploads", headers=preflight(PAGE))
        upload = await post_form(http, PAGE)
    assert answer.status_code == 405
    assert upload.status_code == 201
    assert not [h for h in upload.headers if h.startswith("access-control-")]
