"""`app.main:from_env()`, the ASGI factory for uvicorn --factory, hypercorn and granian."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette

import app.main
from app.main import from_env
from app.settings import SettingsError
from app.units import MiB
from harness.store import Bucket

pytestmark = pytest.mark.anyio


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch, bucket: Bucket) -> Bucket:
    for name in ("S3_KEY_PREFIX", "UPLOAD_AUTH_TOKENS", "UPLOAD_MAX_CONCURRENT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("S3_ENDPOINT_URL", bucket.endpoint)
    monkeypatch.setenv("S3_BUCKET", bucket.name)
    monkeypatch.setenv("UPLOAD_PART_SIZE", "6MiB")
    return bucket


async def test_from_env_builds_the_service_the_environment_describes(environment: Bucket) -> None:
    application = from_env()
    assert application.state.settings.s3_bucket == environment.name
    assert application.state.settings.part_size == 6 * MiB
    data = b"from the factory\n" * 1000
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            assert (await http.get("/healthz")).status_code == 200
            assert (await http.get("/readyz")).status_code == 200
            response = await http.post("/uploads", files={"file": ("notes.txt", data)})
    assert response.status_code == 201, response.text
    environment.assert_intact(response.json()["files"][0], data)


def test_hypercorn_style_target_resolves(environment: Bucket) -> None:
    # hypercorn loads `app.main:from_env()` as eval("from_env()", vars(module)).
    assert isinstance(eval("from_env()", vars(app.main)), Starlette)


def test_invalid_environment_fails_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S3_BUCKET", "b")
    monkeypatch.setenv("UPLOAD_PART_SIZE", "1MiB")
    with pytest.raises(SettingsError, match="UPLOAD_PART_SIZE"):
        from_env()
