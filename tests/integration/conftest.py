"""A real S3 API server (moto in server mode) on loopback, and the app in-process over it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from moto.server import ThreadedMotoServer

from app.main import create_app
from app.settings import Settings
from tests.faulty_s3 import FaultyS3
from tests.support import Bucket, MiB, RcloneS3


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def bucket(s3_endpoint: str) -> Bucket:
    return Bucket(s3_endpoint)


@pytest.fixture(scope="module")
def rclone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RcloneS3]:
    """`rclone serve s3`, for tests that need real timestamps or a server they can stop."""
    server = RcloneS3(tmp_path_factory.mktemp("rclone")).start()
    yield server
    server.stop()


@pytest.fixture
async def proxy(rclone: RcloneS3) -> AsyncIterator[FaultyS3]:
    """tests/faulty_s3.py in front of `rclone serve s3`: faults on demand, requests seen.
    A module that uses it points the app at it by overriding `app_endpoint`."""
    server = await FaultyS3(rclone.endpoint).start()
    yield server
    await server.stop()


@pytest.fixture
def app_endpoint(bucket: Bucket) -> str:
    """Where the app sends S3 calls: the bucket's server, unless a test puts a proxy there."""
    return bucket.endpoint


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


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


class app_client:
    """`async with app_client(settings) as http:` runs the app's lifespan around a client."""

    def __init__(self, settings: Settings) -> None:
        self.app = create_app(settings)
        self._lifespan = self.app.router.lifespan_context(self.app)
        self._http: httpx.AsyncClient | None = None

    async def __aenter__(self) -> httpx.AsyncClient:
        await self._lifespan.__aenter__()
        transport = httpx.ASGITransport(app=self.app)
        self._http = httpx.AsyncClient(transport=transport, base_url="http://testserver")
        return self._http

    async def __aexit__(self, *exc: object) -> None:
        assert self._http is not None
        await self._http.aclose()
        await self._lifespan.__aexit__(None, None, None)
