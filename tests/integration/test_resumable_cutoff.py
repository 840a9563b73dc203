"""A resumable append cut off midway, driven with raw ASGI messages as uvicorn delivers them
(body chunks, then `http.disconnect`): it keeps what reached it, unless it carried a checksum
or had no Content-Length; an upload then goes on from HEAD's offset and ends intact."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp, Message

from app.settings import Settings
from harness.store import Bucket, MiB
from tests.integration.conftest import PART, app_client

pytestmark = pytest.mark.anyio

TUS = {"Tus-Resumable": "1.0.0"}
DATA = os.urandom(4 * PART + 12345)


def patch_scope(url: str, offset: int, *headers: tuple[str, str]) -> dict[str, Any]:
    raw = [
        (b"tus-resumable", b"1.0.0"),
        (b"content-type", b"application/offset+octet-stream"),
        (b"upload-offset", str(offset).encode()),
        *((k.encode(), v.encode()) for k, v in headers),
    ]
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "PATCH",
        "scheme": "http",
        "path": url,
        "raw_path": url.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": raw,
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }


async def cut_patch(
    app: ASGIApp, url: str, offset: int, data: bytes, cut_at: int, *headers: tuple[str, str]
) -> None:
    """PATCH `data` at `offset`, the connection lost after `cut_at` bytes of it."""
    sent = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent < cut_at:
            chunk = data[sent : min(sent + 65536, cut_at)]
            sent += len(chunk)
            return {"type": "http.request", "body": chunk, "more_body": True}
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        pass

    await app(patch_scope(url, offset, *headers), receive, send)


async def offset_of(http: httpx.AsyncClient, url: str) -> int:
    head = await http.head(url, headers=TUS)
    assert head.status_code == 200, head.status_code
    return int(head.headers["upload-offset"])


async def finish(http: httpx.AsyncClient, url: str, offset: int) -> dict[str, Any]:
    response = await http.patch(
        url,
        content=DATA[offset:],
        headers={
            **TUS,
            "Upload-Offset": str(offset),
            "Content-Type": "application/offset+octet-stream",
        },
    )
    assert response.status_code == 204, response.text
    state = await http.head(url, headers=TUS)
    assert state.headers["upload-offset"] == str(len(DATA))
    return dict(response.headers)


@pytest.fixture
def settings(settings_for: Callable[..., Settings]) -> Settings:
    return settings_for(s3_conditional_writes="on")


async def create(http: httpx.AsyncClient) -> str:
    response = await http.post("/files/", headers={**TUS, "Upload-Length": str(len(DATA))})
    assert response.status_code == 201, response.text
    return str(response.headers["location"])


def completed_sha256(bucket: Bucket) -> str:
    (key,) = [k for k in bucket.keys() if not k.startswith(".upload-resumable/")]  # noqa: SIM118
    return bucket.sha256(key)


async def test_a_cut_off_append_keeps_its_parts_and_the_rest_as_the_tail(
    settings: Settings, bucket: Bucket
) -> None:
    cut = 2 * PART + 3 * MiB + 777  # two parts, and 3 MiB more
    served = app_client(settings)
    async with served as http:
        url = await create(http)
        await cut_patch(served.app, url, 0, DATA, cut, ("content-length", str(len(DATA))))
        assert await offset_of(http, url) == cut  # every byte that arrived was kept
        await finish(http, url, cut)
    assert completed_sha256(bucket) == hashlib.sha256(DATA).hexdigest()
    assert bucket.incomplete_uploads() == []


async def test_a_cut_off_append_with_a_checksum_keeps_nothing(
    settings: Settings, bucket: Bucket
) -> None:
    digest = base64.b64encode(hashlib.sha1(DATA).digest()).decode()
    served = app_client(settings)
    async with served as http:
        url = await create(http)
        await cut_patch(
            served.app,
            url,
            0,
            DATA,
            3 * PART,
            ("content-length", str(len(DATA))),
            ("upload-checksum", f"sha1 {digest}"),
        )
        assert await offset_of(http, url) == 0  # the request could not be verified
        await finish(http, url, 0)
    assert completed_sha256(bucket) == hashlib.sha256(DATA).hexdigest()


async def test_a_cut_off_chunked_append_keeps_nothing(settings: Settings, bucket: Bucket) -> None:
    served = app_client(settings)
    async with served as http:
        url = await create(http)
        await cut_patch(served.app, url, 0, DATA, PART + 1, ("transfer-encoding", "chunked"))
        assert await offset_of(http, url) == 0
        await finish(http, url, 0)
    assert completed_sha256(bucket) == hashlib.sha256(DATA).hexdigest()


async def test_an_append_cut_off_after_an_earlier_tail_keeps_both(
    settings: Settings, bucket: Bucket
) -> None:
    served = app_client(settings)
    async with served as http:
        url = await create(http)
        first = 2 * MiB
        response = await http.patch(
            url,
            content=DATA[:first],
            headers={
                **TUS,
                "Upload-Offset": "0",
                "Content-Type": "application/offset+octet-stream",
            },
        )
        assert response.status_code == 204
        rest = DATA[first:]
        await cut_patch(
            served.app, url, first, rest, PART + 100, ("content-length", str(len(rest)))
        )
        offset = await offset_of(http, url)
        assert offset == first + PART + 100
        await finish(http, url, offset)
    assert completed_sha256(bucket) == hashlib.sha256(DATA).hexdigest()


async def test_an_append_cut_off_after_its_last_byte_is_completed_by_head(
    settings: Settings, bucket: Bucket
) -> None:
    """Every byte arrived, but the connection dropped before the body's end was seen: the
    last bytes wait in the tail, and the next HEAD completes the upload with them."""
    served = app_client(settings)
    async with served as http:
        url = await create(http)
        await cut_patch(served.app, url, 0, DATA, len(DATA), ("content-length", str(len(DATA))))
        assert bucket.incomplete_uploads() != []  # not completed by the cut-off request
        assert await offset_of(http, url) == len(DATA)
    assert completed_sha256(bucket) == hashlib.sha256(DATA).hexdigest()
    assert bucket.incomplete_uploads() == []


async def test_a_head_during_a_cut_off_append_waits_for_what_it_keeps(
    settings: Settings, bucket: Bucket
) -> None:
    """A client's HEAD can come before the service has seen its broken connection: the HEAD
    waits (briefly) for that append to keep its bytes, and answers with them."""
    cut = PART + 3 * MiB
    served = app_client(settings)
    async with served as http:
        url = await create(http)
        go_away, all_sent = asyncio.Event(), asyncio.Event()
        sent = 0

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent < cut:
                chunk = DATA[sent : min(sent + 65536, cut)]
                sent += len(chunk)
                return {"type": "http.request", "body": chunk, "more_body": True}
            all_sent.set()
            await go_away.wait()  # the connection is broken, the service does not know yet
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            pass

        scope = patch_scope(url, 0, ("content-length", str(len(DATA))))
        appending = asyncio.ensure_future(served.app(scope, receive, send))
        uploads = served.app.state.resumable
        upload_id = url.rsplit("/", 1)[1]
        await all_sent.wait()  # the append holds the upload and has had every byte
        assert upload_id in uploads._held_here
        head = asyncio.ensure_future(http.head(url, headers=TUS))
        for _ in range(50):
            await asyncio.sleep(0)  # the HEAD is now waiting for the append
        assert not head.done()
        go_away.set()
        await appending
        response = await head
        assert response.headers["upload-offset"] == str(cut)
        await finish(http, url, cut)
    assert completed_sha256(bucket) == hashlib.sha256(DATA).hexdigest()
