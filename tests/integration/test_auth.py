"""Bearer tokens: checked before any byte of the body is read; /auth for nginx auth_request."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from app.settings import Settings
from harness.forms import FilePart, content_type, multipart_body
from harness.store import Bucket
from tests.integration.conftest import app_client

pytestmark = pytest.mark.anyio

TOKEN = "s3cr3t-token-for-tests-0123456789"
OTHER = "another-valid-token-abcdefghijkl"


class CountingBody:
    """A request body that records how many chunks the app pulled."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self.body), 1024):
            self.pulled += 1
            yield self.body[start : start + 1024]


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({}, "no token"),
        ({"authorization": "Bearer wrong-token-wrong-token-wrong"}, "wrong token"),
        ({"authorization": f"Basic {TOKEN}"}, "wrong scheme"),
        ({"authorization": "Bearer "}, "empty token"),
        ({"x-api-key": TOKEN}, "token in the wrong header"),
    ],
)
async def test_rejected_before_the_body_is_read(
    settings_for: Callable[..., Settings], bucket: Bucket, headers: dict[str, str], why: str
) -> None:
    body = CountingBody(multipart_body([FilePart("f", "a.bin", b"x" * 50_000)]))
    pulled_at_answer: list[int] = []
    settings = settings_for(auth_tokens=(TOKEN, OTHER))
    async with app_client(settings, on_answer=lambda: pulled_at_answer.append(body.pulled)) as http:
        response = await http.post(
            "/uploads",
            content=body,
            headers={
                **headers,
                "content-type": content_type(),
                "content-length": str(len(body.body)),
            },
        )
        assert response.status_code == 401, why
        assert response.json()["error"]["code"] == "unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"
        # httpx may start the stream; the app read none of it before answering, and the
        # rest after, to drop it (app/lingering.py).
        assert pulled_at_answer[0] <= 1
        assert body.pulled == -(-len(body.body) // 1024)
        assert (await http.get("/auth", headers=headers)).status_code == 401
    bucket.assert_clean()


async def test_token_in_the_query_string_does_not_count(
    settings_for: Callable[..., Settings], bucket: Bucket
) -> None:
    async with app_client(settings_for(auth_tokens=(TOKEN,))) as http:
        body = multipart_body([FilePart("f", "a.bin", b"abc")])
        response = await http.post(
            f"/uploads?access_token={TOKEN}",
            content=body,
            headers={"content-type": content_type()},
        )
    assert response.status_code == 401
    bucket.assert_clean()


@pytest.mark.parametrize("token", [TOKEN, OTHER])
async def test_every_configured_token_may_upload(
    settings_for: Callable[..., Settings], bucket: Bucket, token: str
) -> None:
    data = b"payload" * 1000
    async with app_client(settings_for(auth_tokens=(TOKEN, OTHER))) as http:
        auth = {"authorization": f"Bearer {token}"}
        assert (await http.get("/auth", headers=auth)).status_code == 204
        response = await http.post(
            "/uploads",
            content=multipart_body([FilePart("f", "a.bin", data)]),
            headers={**auth, "content-type": content_type()},
        )
    assert response.status_code == 201, response.text
    bucket.assert_intact(response.json()["files"][0], data)


async def test_open_when_no_tokens_are_configured(client: httpx.AsyncClient) -> None:
    assert (await client.get("/auth")).status_code == 204


async def test_token_never_appears_in_logs(
    settings_for: Callable[..., Settings], bucket: Bucket, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    async with app_client(settings_for(auth_tokens=(TOKEN,))) as http:
        wrong = {"authorization": "Bearer not-the-token-not-the-token-x"}
        await http.post("/uploads", content=b"", headers={**wrong, "content-type": content_type()})
        good = {"authorization": f"Bearer {TOKEN}", "content-type": content_type()}
        body = multipart_body([FilePart("f", "a.bin", b"abc")])
        assert (await http.post("/uploads", content=body, headers=good)).status_code == 201
    assert TOKEN not in caplog.text and "not-the-token" not in caplog.text


async def test_a_named_token_uploads_and_its_name_is_logged_not_the_token(
    settings_for: Callable[..., Settings], bucket: Bucket, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="app.endpoints")
    async with app_client(settings_for(auth_tokens=(f"alice:{TOKEN}", OTHER))) as http:
        auth = {"authorization": f"Bearer {TOKEN}"}
        assert (await http.get("/auth", headers=auth)).status_code == 204
        response = await http.post(
            "/uploads",
            content=multipart_body([FilePart("f", "a.bin", b"abc")]),
            headers={**auth, "content-type": content_type()},
        )
    assert response.status_code == 201, response.text
    [stored] = [r for r in caplog.records if r.getMessage().startswith("upload stored")]
    assert stored.fields["uploader"] == "alice"  # type: ignore[attr-defined]
    assert TOKEN not in caplog.text
