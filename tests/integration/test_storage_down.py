"""Storage goes away and comes back: 502 while it is down, /readyz follows it, and an abort
that cannot reach storage is logged with its upload id for the sweeper.

Against `rclone serve s3`, stopped and restarted on the same port and directory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from app.settings import Settings
from harness.forms import FilePart, content_type, multipart_body, part_head
from harness.store import Bucket, RcloneStore
from tests.integration.conftest import PART, app_client
from tests.integration.test_client_gone import FILE, scope_for

pytestmark = [pytest.mark.anyio, pytest.mark.rclone]


@pytest.fixture
def rclone(tmp_path: Path) -> Iterator[RcloneStore]:  # one per test: the tests stop it
    server = RcloneStore(tmp_path / "s3", tmp_path / "rclone.log").start()
    yield server
    server.stop()


async def test_storage_down_then_back(
    rclone: RcloneStore, bucket: Bucket, settings_for: Callable[..., Settings]
) -> None:
    small = multipart_body([FilePart("f", "small.bin", b"x" * 1000)])
    large = multipart_body([FilePart("f", "large.bin", b"y" * (2 * PART + 1))])
    headers = {"content-type": content_type()}
    async with app_client(settings_for()) as http:
        assert (await http.get("/readyz")).status_code == 200

        await asyncio.to_thread(rclone.stop)
        ready = await http.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["error"]["code"] == "storage_unavailable"
        for body in (small, large):
            response = await http.post("/uploads", content=body, headers=headers)
            assert response.status_code == 502, response.text
            assert response.json()["error"]["code"] == "storage_error"
        assert (await http.get("/healthz")).status_code == 200

        await asyncio.to_thread(rclone.start)
        assert (await http.get("/readyz")).status_code == 200
        response = await http.post("/uploads", content=large, headers=headers)
        assert response.status_code == 201, response.text
        bucket.assert_intact(response.json()["files"][0], b"y" * (2 * PART + 1))
    assert len(bucket.keys()) == 1  # nothing from the failed attempts


async def test_abort_that_cannot_reach_storage_is_logged_with_its_upload_id(
    rclone: RcloneStore,
    bucket: Bucket,
    settings_for: Callable[..., Settings],
    caplog: pytest.LogCaptureFixture,
) -> None:
    body = multipart_body([FILE])
    stop_at = len(part_head(FILE)) + 2 * PART + 10  # a multipart upload is under way
    sent = 0
    upload_ids: list[str] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent < stop_at:
            chunk = body[sent : min(sent + 65536, stop_at)]
            sent += len(chunk)
            return {"type": "http.request", "body": chunk, "more_body": True}
        uploads = await asyncio.to_thread(bucket.incomplete_uploads)
        upload_ids.extend(u["UploadId"] for u in uploads)
        await asyncio.to_thread(rclone.stop)  # storage dies, then the client goes away
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        pass

    ctx = app_client(settings_for())
    async with ctx:
        await asyncio.wait_for(ctx.app(scope_for(len(body)), receive, send), timeout=60)
    assert len(upload_ids) == 1
    failed = [r.getMessage() for r in caplog.records if "cleanup failed" in r.getMessage()]
    assert failed and upload_ids[0] in failed[0]
