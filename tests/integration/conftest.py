"""A real S3 API server (moto in server mode) on loopback, and the app in-process over it.

A module marked `pytest.mark.rclone` stores into `rclone serve s3` instead (real timestamps,
a server a test can stop); one marked `pytest.mark.faulty_proxy` also has the app reach it
through harness/faulty_s3.py, which breaks the calls a test names.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from moto.server import ThreadedMotoServer
from starlette.types import Message, Receive, Scope, Send

from app.main import create_app
from app.settings import Settings
from harness.faulty_s3 import FaultyS3
from harness.forms import FilePart, chunked, content_type, multipart_body
from harness.store import Bucket, MiB, RcloneStore


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "rclone: the bucket is on `rclone serve s3`, not moto")
    config.addinivalue_line(
        "markers", "faulty_proxy: the app reaches the bucket through harness/faulty_s3.py"
    )


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def bucket(request: pytest.FixtureRequest) -> Bucket:
    """A fresh bucket on moto, or on `rclone serve s3` for tests marked `rclone`."""
    if request.node.get_closest_marker("rclone") is not None:
        rclone: RcloneStore = request.getfixturevalue("rclone")
        return Bucket(rclone.endpoint)
    return Bucket(request.getfixturevalue("s3_endpoint"))


@pytest.fixture
async def proxy(rclone: RcloneStore) -> AsyncIterator[FaultyS3]:
    """harness/faulty_s3.py in front of `rclone serve s3`: faults on demand, requests seen."""
    server = await FaultyS3(rclone.endpoint).start()
    yield server
    await server.stop()


@pytest.fixture
def app_endpoint(request: pytest.FixtureRequest, bucket: Bucket) -> str:
    """Where the app sends S3 calls: the bucket's server, or the proxy in front of it for
    tests marked `faulty_proxy`."""
    if request.node.get_closest_marker("faulty_proxy") is not None:
        proxy: FaultyS3 = request.getfixturevalue("proxy")
        return proxy.endpoint
    return bucket.endpoint


#: Small sizes so the boundaries are cheap to cross: 5 MiB parts, 12 MiB threshold.
PART = 5 * MiB
THRESHOLD = 12 * MiB


@pytest.fixture
def settings_for(bucket: Bucket, app_endpoint: str) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "s3_bucket": bucket.name,
            "s3_endpoint_url": app_endpoint,
            "s3_addressing_style": "path",
            "part_size": PART,
            "multipart_threshold": THRESHOLD,
            "s3_max_attempts": 2,
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
async def client(settings_for: Callable[..., Settings]) -> AsyncIterator[httpx.AsyncClient]:
    """The app with default test settings, served in-process (lifespan included)."""
    async with app_client(settings_for()) as http:
        yield http


async def post_chunked(http: httpx.AsyncClient, data: bytes) -> httpx.Response:
    """POST /uploads a form of one file holding `data`, chunked (no Content-Length)."""
    body = multipart_body([FilePart("f", "a.bin", data)])
    return await http.post(
        "/uploads", content=chunked(body), headers={"content-type": content_type()}
    )


def scope_for(body_size: int, *headers: tuple[bytes, bytes]) -> dict[str, Any]:
    """The ASGI scope of a POST /uploads of a form of `body_size` bytes, as uvicorn makes it,
    for tests that drive the app with raw ASGI messages."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/uploads",
        "raw_path": b"/uploads",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"content-type", content_type().encode()),
            (b"content-length", str(body_size).encode()),
            *headers,
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    """The documented error answer: `status`, and a JSON error with `code` and a message."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]


class app_client:
    """`async with app_client(settings) as http:` runs the app's lifespan around a client.

    `on_answer` is called when the app starts its response. httpx hands the response over
    only once the app is done, and after an early refusal the app goes on reading the body
    (app/lingering.py): what a request body has given by `on_answer` is what the app read
    before it answered.
    """

    def __init__(self, settings: Settings, *, on_answer: Callable[[], None] | None = None) -> None:
        self.app = create_app(settings)
        self._on_answer = on_answer
        self._lifespan = self.app.router.lifespan_context(self.app)
        self._http: httpx.AsyncClient | None = None

    async def _watched(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def watched_send(message: Message) -> None:
            if message["type"] == "http.response.start" and self._on_answer is not None:
                self._on_answer()
            await send(message)

        await self.app(scope, receive, watched_send)

    async def __aenter__(self) -> httpx.AsyncClient:
        await self._lifespan.__aenter__()
        transport = httpx.ASGITransport(app=self._watched)
        self._http = httpx.AsyncClient(transport=transport, base_url="http://testserver")
        return self._http

    async def __aexit__(self, *exc: object) -> None:
        assert self._http is not None
        await self._http.aclose()
        await self._lifespan.__aexit__(None, None, None)
