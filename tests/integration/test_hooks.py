"""Hooks for form and resumable uploads against a real HTTP receiver on loopback
(harness/hooks.py) and a real S3 API server: pre-create allows, refuses, chooses keys;
post-finish and post-abort are recorded in the bucket and delivered, also after the receiver
was down; every call is signed and none carries a token."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from app.client.formbody import FormField
from app.hooks.outbox import FAILED_PREFIX, PENDING_PREFIX
from app.settings import Settings
from harness.faulty_s3 import Fault, FaultyS3
from harness.forms import FilePart, chunked, content_type, multipart_body
from harness.hooks import STALL, HookReceiver, Reply
from harness.store import Bucket, MiB, sha256
from tests.integration.conftest import app_client, assert_error, scope_for

pytestmark = pytest.mark.anyio

SECRET = "hook-secret-for-tests-0123456789"
TOKEN = "alice-token-0123456789abcdef"
DATA = b"course video bytes\n" * 500


@pytest.fixture
def receiver() -> Iterator[HookReceiver]:
    server = HookReceiver().start()
    yield server
    server.stop()


@pytest.fixture
def hooked(
    settings_for: Callable[..., Settings], receiver: HookReceiver
) -> Callable[..., Settings]:
    """Settings with hooks to `receiver`, a named token, and short times for the tests."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "auth_tokens": (f"alice:{TOKEN}",),
            "hook_url": receiver.url,
            "hook_secret": SECRET,
            "hook_timeout": 0.5,
            "hook_backoff": 0.05,
            "hook_backoff_max": 0.2,
            "hook_poll_interval": 0.1,
        }
        return settings_for(**{**values, **overrides})

    return make


async def eventually(predicate: Callable[[], bool], within: float = 15) -> None:
    """Poll `predicate` (the app's deliverer runs on this loop meanwhile) until it holds."""
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        await asyncio.sleep(0.02)


async def upload(http: httpx.AsyncClient, *parts: Any, token: str = TOKEN) -> httpx.Response:
    body = multipart_body(list(parts) or [FilePart("video", "intro.mp4", DATA, "video/mp4")])
    return await http.post(
        "/uploads",
        content=body,
        headers={
            "authorization": f"Bearer {token}",
            "content-type": content_type(),
            "x-request-id": "req-1",
        },
    )


def hook_keys(bucket: Bucket, prefix: str) -> list[str]:
    stored = bucket.keys()
    return [key for key in stored if key.startswith(prefix)]


def uploaded_keys(bucket: Bucket) -> list[str]:
    stored = bucket.keys()
    return [key for key in stored if not key.startswith(".upload-hooks/")]


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# --- pre-create ----------------------------------------------------------------------------


async def test_pre_create_is_told_who_what_and_the_fields_so_far(
    hooked: Callable[..., Settings], receiver: HookReceiver, bucket: Bucket
) -> None:
    parts = [FormField("course", "42"), FilePart("video", "intro.mp4", DATA, "video/mp4")]
    async with app_client(hooked()) as http:
        response = await upload(http, *parts)
    assert response.status_code == 201, response.text
    [event] = receiver.received("pre-create")
    assert event["type"] == "pre-create" and event["id"]
    body_size = len(multipart_body(parts))
    assert event["upload"] == {
        "uploader": "alice",
        "client": "127.0.0.1",
        "request_id": "req-1",
        "declared_size": body_size,
    }
    assert event["file"] == {"field": "video", "filename": "intro.mp4", "content_type": "video/mp4"}
    assert event["fields"] == {"course": "42"}


async def test_a_refusal_reaches_the_client_with_the_hooks_status_and_message(
    hooked: Callable[..., Settings], receiver: HookReceiver, bucket: Bucket
) -> None:
    receiver.reply = lambda event: (403, {"message": "course 42 is closed for uploads"})
    async with app_client(hooked()) as http:
        response = await upload(http)
        assert_error(response, 403, "hook_refused")
        assert response.json()["error"]["message"] == "course 42 is closed for uploads"
    assert bucket.is_clean()  # no byte stored, and no file started: no post-abort either


async def test_a_refusal_mid_body_reaches_a_client_still_sending(
    hooked: Callable[..., Settings], receiver: HookReceiver, bucket: Bucket
) -> None:
    """The refused file is 16 MiB, sent chunked after a stored file: the answer comes while
    the body is still coming, and is delivered as every early refusal is (app/lingering.py)."""
    receiver.reply = lambda event: (
        (413, {"message": "videos only up to 1 GiB"})
        if event["type"] == "pre-create" and event["file"]["filename"] == "big.mp4"
        else (200, None)
    )
    body = multipart_body(
        [FilePart("f", "small.txt", b"notes"), FilePart("f", "big.mp4", b"v" * (16 << 20))]
    )
    async with app_client(hooked()) as http:
        response = await http.post(
            "/uploads",
            content=chunked(body),
            headers={"authorization": f"Bearer {TOKEN}", "content-type": content_type()},
        )
        assert_error(response, 413, "hook_refused")
        assert response.json()["error"]["message"] == "videos only up to 1 GiB"
        await eventually(lambda: len(receiver.received("post-abort")) == 1)
        await eventually(lambda: hook_keys(bucket, PENDING_PREFIX) == [])
    assert bucket.incomplete_uploads() == [] and uploaded_keys(bucket) == []


async def test_a_refusal_without_a_message_gets_a_plain_one(
    hooked: Callable[..., Settings], receiver: HookReceiver, bucket: Bucket
) -> None:
    receiver.reply = lambda event: (422, None)
    async with app_client(hooked()) as http:
        assert_error(await upload(http), 422, "hook_refused")
    assert bucket.is_clean()


async def test_a_refused_second_file_undoes_the_first_and_reports_it_aborted(
    hooked: Callable[..., Settings], receiver: HookReceiver, bucket: Bucket
) -> None:
    def second_refused(event: dict[str, Any]) -> Reply:
        if event["type"] == "pre-create" and event["file"]["filename"] == "b.bin":
            return 409, {"message": "only one file per lesson"}
        return 200, None

    receiver.reply = second_refused
    parts = [FilePart("f", "a.bin", DATA), FilePart("f", "b.bin", DATA)]
    async with app_client(hooked()) as http:
        response = await upload(http, *parts)
        assert_error(response, 409, "hook_refused")
        await eventually(lambda: len(receiver.received("post-abort")) == 1)
    [aborted] = receiver.received("post-abort")
    assert aborted["reason"] == "hook_refused"
    assert [(f["field"], f["filename"]) for f in aborted["files"]] == [("f", "a.bin")]
    assert aborted["upload"]["request_id"] == "req-1"
    assert bucket.incomplete_uploads() == [] and uploaded_keys(bucket) == []
    assert hook_keys(bucket, PENDING_PREFIX) == []


async def test_the_hook_chooses_the_key_over_the_clients_and_adds_metadata(
    hooked: Callable[..., Settings], receiver: HookReceiver, bucket: Bucket
) -> None:
    receiver.reply = lambda event: (
        (200, {"key": "courses/42/intro.mp4", "metadata": {"course-id": "42"}})
        if event["type"] == "pre-create"
        else (200, None)
    )
    parts = [FormField("video.key", "mine.mp4"), FilePart("video", "intro.mp4", DATA)]
    async with app_client(hooked(client_keys=True)) as http:
        response = await upload(http, *parts)
    assert response.status_code == 201, response.text
    stored = response.json()["files"][0]
    assert stored["key"] == "uploads/courses/42/intro.mp4"
    bucket.assert_intact(stored, DATA)
    metadata = bucket.head(stored["key"])["Metadata"]
    assert metadata["course-id"] == "42" and metadata["original-filename"] == "intro.mp4"
    assert uploaded_keys(bucket) == ["uploads/courses/42/intro.mp4"]


async def test_no_overwrite_still_applies_to_a_key_the_hook_chose(
    hooked: Callable[..., Settings], receiver: HookReceiver, bucket: Bucket
) -> None:
    receiver.reply = lambda event: (200, {"key": "same.bin"})
    async with app_client(hooked(no_overwrite=True)) as http:
        assert (await upload(http)).status_code == 201
        assert_error(await upload(http), 409, "key_exists")
    bucket.assert_intact(
        {"key": "uploads/same.bin", "size": len(DATA), "sha256": sha256(DATA)}, DATA
    )


@pytest.mark.parametrize(
    "answer",
    [
        {"key": "../escape"},
        {"key": ".upload-hooks/pending/x.json"},
        {"key": 7},
        {"metadata": {"Bad Name": "x"}},
        {"metadata": {"original-filename": "x"}},
        {"metadata": {"note": "line\nbreak"}},
        {"metadata": {f"m{i}": "v" * 100 for i in range(10)}},
        ["not", "an", "object"],
    ],
)
async def test_an_unusable_answer_is_refused_with_502(
    hooked: Callable[..., Settings], receiver: HookReceiver, bucket: Bucket, answer: Any
) -> None:
    receiver.reply = lambda event: (200, answer)
    async with app_client(hooked(s3_key_prefix="")) as http:
        assert_error(await upload(http), 502, "hook_invalid_answer")
    assert bucket.is_clean()


@pytest.mark.parametrize(
    ("reply", "why"),
    [(STALL, "no answer within UPLOAD_HOOK_TIMEOUT"), ((500, None), "a 5xx")],
)
async def test_a_failing_hook_refuses_with_503_after_its_retries(
    hooked: Callable[..., Settings], receiver: HookReceiver, bucket: Bucket, reply: Reply, why: str
) -> None:
    receiver.reply = lambda event: reply
    async with app_client(hooked(hook_timeout=0.3, hook_pre_create_retries=1)) as http:
        started = time.monotonic()
        response = await upload(http)
        assert_error(response, 503, "hook_unavailable")
        assert time.monotonic() - started < 10  # bounded by the settings, not the receiver
    assert len(receiver.received("pre-create")) == 2, why  # the call and one retry
    assert bucket.is_clean()


async def test_an_unreachable_hook_refuses_with_503(
    hooked: Callable[..., Settings], receiver: HookReceiver, bucket: Bucket
) -> None:
    receiver.stop()
    async with app_client(hooked()) as http:
        assert_error(await upload(http), 503, "hook_unavailable")
    assert bucket.is_clean()


@pytest.mark.parametrize("reply", [STALL, (502, None)], ids=["timeout", "5xx"])
async def test_fail_open_allows_when_the_hook_fails(
    hooked: Callable[..., Settings], receiver: HookReceiver, bucket: Bucket, reply: Reply
) -> None:
    receiver.reply = lambda event: reply if event["type"] == "pre-create" else (200, None)
    async with app_client(hooked(hook_timeout=0.3, hook_fail_open=True)) as http:
        response = await upload(http)
    assert response.status_code == 201, response.text
    bucket.assert_intact(response.json()["files"][0], DATA)


async def test_pre_create_latency_is_measured(
    hooked: Callable[..., Settings], receiver: HookReceiver, bucket: Bucket
) -> None:
    before = counter("upload_hook_seconds_count", hook="pre-create", outcome="allowed")
    async with app_client(hooked()) as http:
        assert (await upload(http)).status_code == 201
        exposed = (await http.get("/metrics")).text
    after = counter("upload_hook_seconds_count", hook="pre-create", outcome="allowed")
    assert after == before + 1
    assert 'upload_hook_seconds_bucket{hook="pre-create"' in exposed


# --- signatures and tokens -----------------------------------------------------------------


async def test_every_call_is_signed_and_carries_no_token(
    hooked: Callable[..., Settings], receiver: HookReceiver, bucket: Bucket
) -> None:
    async with app_client(hooked()) as http:
        assert (await upload(http)).status_code == 201
        await eventually(lambda: len(receiver.received("post-finish")) == 1)
    calls = receiver.all_calls()
    assert {c.headers["upload-hook-event"] for c in calls} == {"pre-create", "post-finish"}
    for call in calls:
        assert call.verifies(SECRET)
        assert not call.verifies("another-secret-0123456789abc")
        assert call.headers["upload-hook-id"] == call.event["id"]
        seen = json.dumps(call.headers) + call.body.decode()
        assert TOKEN not in seen and SECRET not in seen


# --- post-finish and post-abort ------------------------------------------------------------


async def test_post_finish_carries_the_answer_and_leaves_nothing_pending(
    hooked: Callable[..., Settings], receiver: HookReceiver, bucket: Bucket
) -> None:
    parts = [FormField("course", "42"), FilePart("video", "intro.mp4", DATA, "video/mp4")]
    async with app_client(hooked()) as http:
        response = await upload(http, *parts)
        assert response.status_code == 201, response.text
        await eventually(lambda: len(receiver.received("post-finish")) == 1)
        await eventually(lambda: hook_keys(bucket, PENDING_PREFIX) == [])
    [event] = receiver.received("post-finish")
    answer = response.json()
    assert event["files"] == answer["files"] and event["fields"] == answer["fields"]
    assert event["upload"]["uploader"] == "alice" and event["upload"]["request_id"] == "req-1"
    bucket.assert_intact(answer["files"][0], DATA)


async def test_a_receiver_down_then_back_gets_every_post_finish(
    hooked: Callable[..., Settings], receiver: HookReceiver, bucket: Bucket
) -> None:
    receiver.reply = lambda event: (200, None)
    async with app_client(hooked(hook_fail_open=True)) as http:
        receiver.stop()
        answers = [await upload(http, FilePart("f", f"{n}.bin", DATA)) for n in range(3)]
        assert [a.status_code for a in answers] == [201, 201, 201]
        before = counter("upload_hook_deliveries_total", event="post-finish", outcome="retry")
        # Every event waits in the bucket; each was tried and failed at least once.
        await eventually(lambda: len(hook_keys(bucket, PENDING_PREFIX)) == 3)
        await eventually(
            lambda: (
                counter("upload_hook_deliveries_total", event="post-finish", outcome="retry")
                >= before + 3
            )
        )
        receiver.start()
        await eventually(lambda: len(receiver.received("post-finish")) >= 3)
        await eventually(lambda: hook_keys(bucket, PENDING_PREFIX) == [])
    delivered = {f["key"] for e in receiver.received("post-finish") for f in e["files"]}
    assert delivered == {a.json()["files"][0]["key"] for a in answers}


async def test_a_delivery_out_of_attempts_is_logged_counted_parked_and_replayable(
    hooked: Callable[..., Settings],
    receiver: HookReceiver,
    bucket: Bucket,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="app.hooks")
    refusing = True
    receiver.reply = lambda event: (
        (500, None) if event["type"] == "post-finish" and refusing else (200, None)
    )
    before = counter("upload_hook_deliveries_total", event="post-finish", outcome="failed")
    async with app_client(hooked(hook_delivery_attempts=2)) as http:
        response = await upload(http)
        assert response.status_code == 201
        # Parked: written under failed/, then deleted from pending/.
        await eventually(
            lambda: (
                len(hook_keys(bucket, FAILED_PREFIX)) == 1
                and hook_keys(bucket, PENDING_PREFIX) == []
            )
        )
        assert len(receiver.received("post-finish")) == 2
        assert (
            counter("upload_hook_deliveries_total", event="post-finish", outcome="failed")
            == before + 1
        )
        [failed] = hook_keys(bucket, FAILED_PREFIX)
        [record] = [r for r in caplog.records if "hook delivery failed" in r.getMessage()]
        logged = record.fields["event"]  # type: ignore[attr-defined]
        assert logged["files"] == response.json()["files"]
        # Replay: move it back to pending/, as docs/integrating.md says.
        refusing = False
        bucket.s3.copy_object(
            Bucket=bucket.name,
            Key=PENDING_PREFIX + failed.removeprefix(FAILED_PREFIX),
            CopySource={"Bucket": bucket.name, "Key": failed},
        )
        bucket.s3.delete_object(Bucket=bucket.name, Key=failed)
        await eventually(lambda: hook_keys(bucket, PENDING_PREFIX) == [])
    assert len(receiver.received("post-finish")) == 3
    assert receiver.received("post-finish")[-1]["id"] == logged["id"]


@pytest.mark.rclone
@pytest.mark.faulty_proxy
async def test_an_event_the_bucket_refuses_is_logged_in_full_and_the_answer_stands(
    hooked: Callable[..., Settings],
    receiver: HookReceiver,
    bucket: Bucket,
    proxy: FaultyS3,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The fault proxy fails every PutObject after the file's own: the pending write."""
    caplog.set_level(logging.ERROR, logger="app.hooks")
    proxy.faults = [Fault("PutObject", first=2, last=None, kind="internal")]
    before = counter("upload_hook_deliveries_total", event="post-finish", outcome="unrecorded")
    async with app_client(hooked()) as http:
        response = await upload(http)
    assert response.status_code == 201, response.text
    bucket.assert_intact(response.json()["files"][0], DATA)
    assert hook_keys(bucket, ".upload-hooks/") == []
    after = counter("upload_hook_deliveries_total", event="post-finish", outcome="unrecorded")
    assert after == before + 1
    [record] = [r for r in caplog.records if "hook event not recorded" in r.getMessage()]
    event = record.fields["event"]  # type: ignore[attr-defined]
    assert event["files"] == response.json()["files"]
    # The line itself holds the event's JSON: enough to replay it by hand.
    message = record.getMessage()
    assert json.loads(message[message.index("{") :]) == event


async def test_without_a_hook_url_nothing_is_called_nor_recorded(
    settings_for: Callable[..., Settings], receiver: HookReceiver, bucket: Bucket
) -> None:
    async with app_client(settings_for()) as http:
        response = await http.post(
            "/uploads",
            content=multipart_body([FilePart("f", "a.bin", DATA)]),
            headers={"content-type": content_type()},
        )
    assert response.status_code == 201
    assert receiver.all_calls() == [] and hook_keys(bucket, ".upload-hooks/") == []


@pytest.mark.parametrize("key", [".upload-hooks/pending/x.json", ".upload-hooks/failed/x.json"])
async def test_a_client_key_can_never_reach_the_hooks_prefix(
    hooked: Callable[..., Settings], bucket: Bucket, key: str
) -> None:
    async with app_client(hooked(client_keys=True, s3_key_prefix="")) as http:
        response = await upload(http, FormField("f.key", key), FilePart("f", "a.bin", DATA))
    assert_error(response, 400, "invalid_key")


@pytest.mark.rclone
@pytest.mark.faulty_proxy
async def test_a_shutdown_cut_off_while_post_finish_is_recorded_still_answers_201(
    hooked: Callable[..., Settings], receiver: HookReceiver, bucket: Bucket, proxy: FaultyS3
) -> None:
    """The store is slow to take the pending record (the proxy holds the second PutObject,
    after the file's own) when uvicorn's graceful-shutdown time runs out and cancels the
    request: the file is stored, so the client still gets 201, and the record, shielded,
    still lands and is delivered."""
    release = asyncio.Event()
    proxy.faults = [Fault("PutObject", first=2, last=2, kind="hold", until=release)]
    body = multipart_body([FilePart("video", "intro.mp4", DATA, "video/mp4")])
    sent: list[dict[str, Any]] = []
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.Event().wait()  # nothing more: the body was all sent
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = scope_for(len(body), (b"authorization", f"Bearer {TOKEN}".encode()))
    served = app_client(hooked())
    async with served:
        task = asyncio.ensure_future(served.app(scope, receive, send))
        await eventually(lambda: ("PutObject", 2, "hold") in proxy.broken)
        task.cancel()  # what uvicorn does when its graceful-shutdown time is up
        await asyncio.wait_for(task, timeout=60)
        release.set()
        await eventually(lambda: len(receiver.received("post-finish")) == 1)
    start = next(m for m in sent if m["type"] == "http.response.start")
    answer = json.loads(b"".join(m.get("body", b"") for m in sent[1:]))
    assert start["status"] == 201, answer
    bucket.assert_intact(answer["files"][0], DATA)
    assert receiver.received("post-finish")[0]["files"] == answer["files"]


# --- resumable uploads (/files/) -------------------------------------------------------------

RESUMABLE = {"Tus-Resumable": "1.0.0", "Authorization": f"Bearer {TOKEN}"}


def tus_metadata(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


async def test_pre_create_refuses_before_anything_is_stored(
    hooked: Callable[..., Settings], receiver: HookReceiver, bucket: Bucket
) -> None:
    receiver.reply = lambda event: (403, {"message": "course 42 is closed for uploads"})
    async with app_client(hooked(s3_conditional_writes="on")) as http:
        response = await http.post(
            "/files/",
            headers={
                **RESUMABLE,
                "Upload-Length": "100",
                "Upload-Metadata": tus_metadata(
                    filename="v.mp4", filetype="video/mp4", course="42"
                ),
            },
        )
    assert_error(response, 403, "hook_refused")
    assert response.json()["error"]["message"] == "course 42 is closed for uploads"
    [event] = receiver.received("pre-create")
    assert event["file"] == {"field": "", "filename": "v.mp4", "content_type": "video/mp4"}
    assert event["fields"] == {"course": "42"} and event["upload"]["uploader"] == "alice"
    assert event["upload"]["declared_size"] == 100
    bucket.assert_clean()


async def test_post_finish_carries_the_stored_file_and_its_sha256(
    hooked: Callable[..., Settings], receiver: HookReceiver, bucket: Bucket
) -> None:
    receiver.reply = lambda event: (
        200,
        {"key": "course-42/intro.mp4"} if event["type"] == "pre-create" else None,
    )
    data = os.urandom(6 * MiB)
    async with app_client(hooked(s3_conditional_writes="on")) as http:
        created = await http.post(
            "/files/",
            headers={
                **RESUMABLE,
                "Upload-Length": str(len(data)),
                "Upload-Metadata": tus_metadata(filename="intro.mp4"),
            },
        )
        url = created.headers["location"]
        for offset in (0, 4 * MiB):
            response = await http.patch(
                url,
                content=data[offset : offset + 4 * MiB],
                headers={
                    **RESUMABLE,
                    "Upload-Offset": str(offset),
                    "Content-Type": "application/offset+octet-stream",
                },
            )
            assert response.status_code == 204, response.text
        await eventually(lambda: len(receiver.received("post-finish")) == 1)
    [event] = receiver.received("post-finish")
    [file] = event["files"]
    assert file["key"] == "uploads/course-42/intro.mp4" and file["size"] == len(data)
    assert file["sha256"] == hashlib.sha256(data).hexdigest() == bucket.sha256(file["key"])
    assert event["resumable"]["id"] == url.rsplit("/", 1)[1]


async def test_termination_is_reported_as_an_abort(
    hooked: Callable[..., Settings], receiver: HookReceiver, bucket: Bucket
) -> None:
    async with app_client(hooked(s3_conditional_writes="on")) as http:
        created = await http.post(
            "/files/",
            headers={
                **RESUMABLE,
                "Upload-Length": "10",
                "Upload-Metadata": tus_metadata(filename="a.txt"),
            },
        )
        response = await http.delete(created.headers["location"], headers=RESUMABLE)
        assert response.status_code == 204
        await eventually(lambda: len(receiver.received("post-abort")) == 1)
    [event] = receiver.received("post-abort")
    assert event["reason"] == "terminated" and event["files"][0]["filename"] == "a.txt"
