"""post-finish deliveries survive the instance: an event recorded in the bucket while the
receiver was down is delivered by the next instance started over that bucket (real uvicorn
processes, `rclone serve s3`, a real receiver on loopback)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from botocore.exceptions import BotoCoreError, ClientError
from urllib3.exceptions import ProtocolError

from app.hooks.outbox import PENDING_PREFIX
from harness.forms import FilePart, content_type, multipart_body
from harness.hooks import HookReceiver
from harness.processes import wait_until
from harness.store import Bucket, MiB, sha256
from tests.e2e.conftest import StartApp

SECRET = "hook-secret-for-tests-0123456789"
TOKEN = "alice-token-0123456789abcdef"


@pytest.fixture
def receiver() -> Iterator[HookReceiver]:
    server = HookReceiver()  # not started: the receiver is down
    yield server
    server.stop()


def pending(bucket: Bucket) -> list[str]:
    stored = bucket.keys()
    return [key for key in stored if key.startswith(PENDING_PREFIX)]


def test_a_restarted_instance_delivers_the_events_left_pending(
    start_app: StartApp, bucket: Bucket, receiver: HookReceiver
) -> None:
    env = {
        "UPLOAD_AUTH_TOKENS": f"alice:{TOKEN}",
        "UPLOAD_HOOK_URL": receiver.url,
        "UPLOAD_HOOK_SECRET": SECRET,
        "UPLOAD_HOOK_FAIL_OPEN": "on",  # pre-create cannot be answered while it is down
        "UPLOAD_HOOK_TIMEOUT": "1",
        "UPLOAD_HOOK_BACKOFF": "0.1",
        "UPLOAD_HOOK_BACKOFF_MAX": "0.5",
        "UPLOAD_HOOK_POLL_INTERVAL": "0.2",
        "UPLOAD_HOOK_DELIVERY_ATTEMPTS": "100",
    }
    data = b"lesson 1\n" * 10_000
    first = start_app(bucket, part_size=5 * MiB, env=env)
    response = httpx.post(
        f"{first.url}/uploads",
        content=multipart_body([FilePart("video", "lesson.mp4", data)]),
        headers={"authorization": f"Bearer {TOKEN}", "content-type": content_type()},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    stored = response.json()["files"][0]
    assert stored["sha256"] == sha256(data)

    def tried_and_failed() -> bool:
        keys = pending(bucket)
        try:
            record = json.loads(bucket.read(keys[0])) if len(keys) == 1 else {}
        except (BotoCoreError, ClientError, ProtocolError, ValueError):
            return False  # read while the instance rewrites it (rclone's file is replaced)
        return bool(record) and record["attempts"] >= 1

    assert wait_until(tried_and_failed, timeout=20)
    first.stop()
    assert len(pending(bucket)) == 1  # the stop left it for whoever comes next

    receiver.start()
    start_app(bucket, part_size=5 * MiB, env=env)
    assert wait_until(lambda: receiver.received("post-finish") != [], timeout=30)
    assert wait_until(lambda: pending(bucket) == [], timeout=30)
    [event] = receiver.received("post-finish")[-1:]
    assert event["files"] == response.json()["files"]
    assert event["upload"]["uploader"] == "alice"
    calls = receiver.all_calls()
    assert all(call.verifies(SECRET) for call in calls)
    assert all(TOKEN not in json.dumps(call.headers) + call.body.decode() for call in calls)
    bucket.assert_intact(stored, data)
