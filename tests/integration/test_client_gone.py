"""The client goes away or the request is cancelled mid-upload: nothing may remain.

These drive the app with raw ASGI messages, exactly as uvicorn does: body chunks, then an
`http.disconnect` (or a receive() that never returns, to cancel the request task).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

from app.settings import Settings
from harness.faulty_s3 import Fault, FaultyS3
from harness.forms import FilePart, multipart_body, part_head
from harness.store import Bucket
from tests.integration.conftest import PART, app_client, scope_for

pytestmark = pytest.mark.anyio

FILE = FilePart("file", "big.bin", bytes(4 * PART))


class Receiver:
    """Hands out the body in 64 KiB messages up to `stop_at` bytes, then ends the body."""

    def __init__(self, body: bytes, stop_at: int, bucket: Bucket, then: str) -> None:
        self.body = body
        self.stop_at = stop_at
        self.bucket = bucket
        self.then = then
        self.sent = 0
        self.uploads_seen_before_end: list[dict[str, Any]] = []
        self.reached_end = asyncio.Event()

    async def __call__(self) -> dict[str, Any]:
        if self.sent < self.stop_at:
            chunk = self.body[self.sent : min(self.sent + 65536, self.stop_at)]
            self.sent += len(chunk)
            return {"type": "http.request", "body": chunk, "more_body": True}
        if not self.reached_end.is_set():
            # Record what storage holds right now: proof that the abort had work to do.
            self.uploads_seen_before_end = await asyncio.to_thread(self.bucket.incomplete_uploads)
            self.reached_end.set()
        if self.then == "disconnect":
            return {"type": "http.disconnect"}
        await asyncio.Event().wait()  # a client that stalls forever
        raise AssertionError("unreachable")


async def drive(
    settings: Settings, bucket: Bucket, stop_at: int, then: str
) -> tuple[Receiver, list[dict[str, Any]]]:
    body = multipart_body([FILE])
    receive = Receiver(body, stop_at, bucket, then)
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    ctx = app_client(settings)
    async with ctx:
        task = asyncio.ensure_future(ctx.app(scope_for(len(body)), receive, send))
        if then in ("disconnect", "stall"):
            await asyncio.wait_for(task, timeout=60)
        else:
            await asyncio.wait_for(receive.reached_end.wait(), timeout=60)
            task.cancel()  # what uvicorn does when its graceful-shutdown time is up
            await asyncio.wait_for(task, timeout=60)
            # The cleanup outlives the cancelled task; shutdown waits for it too.
            await ctx.app.state.storage.wait_for_cleanups(grace=30)
    return receive, sent


def answered(sent: list[dict[str, Any]]) -> tuple[int, bytes]:
    """The status and body of the response in the messages the app sent."""
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], body


@pytest.mark.parametrize(
    "file_bytes",
    [None, PART // 2, 2 * PART, 3 * PART + 7],
    ids=["at-0%", "in-part-1", "on-part-boundary", "in-part-4"],
)
async def test_disconnect_mid_body_leaves_nothing(
    settings_for: Callable[..., Settings], bucket: Bucket, file_bytes: int | None
) -> None:
    """`file_bytes` of the file arrive (None: not even the part header), then disconnect."""
    stop_at = 0 if file_bytes is None else len(part_head(FILE)) + file_bytes
    receive, sent = await drive(settings_for(), bucket, stop_at, "disconnect")
    if stop_at > PART + 65536:
        assert len(receive.uploads_seen_before_end) == 1  # a multipart upload was under way
    bucket.assert_clean()
    assert answered(sent)[0] == 400  # never read by the gone client, but well-formed


@pytest.mark.parametrize("parts_in_flight", [1, 3])
async def test_cancelled_request_is_aborted(
    settings_for: Callable[..., Settings], bucket: Bucket, parts_in_flight: int
) -> None:
    receive, sent = await drive(
        settings_for(parts_in_flight=parts_in_flight), bucket, 3 * PART + 99, "hang"
    )
    assert len(receive.uploads_seen_before_end) == 1
    bucket.assert_clean()
    status, body = answered(sent)
    assert status == 503
    assert json.loads(body)["error"]["code"] == "shutting_down"


@pytest.mark.parametrize("file_bytes", [None, PART + 1000], ids=["before-any-part", "mid-part-2"])
async def test_stalled_client_hits_the_idle_timeout(
    settings_for: Callable[..., Settings], bucket: Bucket, file_bytes: int | None
) -> None:
    """A client that stops sending (uvicorn has no body read timeout) is cut off by
    UPLOAD_IDLE_TIMEOUT: 408 idle_timeout, and its multipart upload is aborted."""
    stop_at = 0 if file_bytes is None else len(part_head(FILE)) + file_bytes
    receive, sent = await drive(settings_for(idle_timeout=0.5), bucket, stop_at, "stall")
    if file_bytes:
        assert len(receive.uploads_seen_before_end) == 1
    bucket.assert_clean()
    status, body = answered(sent)
    assert status == 408
    assert json.loads(body)["error"]["code"] == "idle_timeout"


@pytest.mark.rclone
@pytest.mark.faulty_proxy
async def test_shutdown_running_out_while_a_failed_upload_is_undone_still_answers_in_json(
    settings_for: Callable[..., Settings], bucket: Bucket, proxy: FaultyS3
) -> None:
    """A stalled upload hits its idle timeout and is being undone when uvicorn's graceful-
    shutdown time runs out (the task is cancelled again, in the abort). The store is slow to
    abort: the proxy holds AbortMultipartUpload until the task has been cancelled. The client
    still gets a JSON 503, not uvicorn's plain-text 500, and nothing is left."""
    release = asyncio.Event()
    proxy.faults.append(Fault("AbortMultipartUpload", kind="hold", until=release))
    body = multipart_body([FILE])
    receive = Receiver(body, len(part_head(FILE)) + PART + 1000, bucket, "stall")
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    served = app_client(settings_for(idle_timeout=0.5))
    async with served:
        task = asyncio.ensure_future(served.app(scope_for(len(body)), receive, send))
        for _ in range(3000):  # the abort reaches the store (at most 30 s)
            if ("AbortMultipartUpload", 1, "hold") in proxy.broken:
                break
            await asyncio.sleep(0.01)
        assert ("AbortMultipartUpload", 1, "hold") in proxy.broken
        task.cancel()  # what uvicorn does when its graceful-shutdown time is up
        await asyncio.wait_for(task, timeout=60)
        release.set()
        await served.app.state.storage.wait_for_cleanups(grace=30)
    status, answer = answered(sent)
    assert (status, json.loads(answer)["error"]["code"]) == (503, "shutting_down")
    bucket.assert_clean()
