"""Resumable uploads at /files/ (app/resumable/) against moto, which enforces conditional
writes: tus 1.0 and the IETF draft, bytes read back by SHA-256, the bucket left clean."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from app.settings import RESUMABLE_PREFIX, Settings
from harness.store import Bucket, MiB
from tests.integration.conftest import app_client, assert_error

TUS = {"Tus-Resumable": "1.0.0"}
IETF_05 = {"Upload-Draft-Interop-Version": "6"}
IETF_03 = {"Upload-Draft-Interop-Version": "5"}
OCTETS = {"Content-Type": "application/offset+octet-stream"}

pytestmark = pytest.mark.anyio


def metadata(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


@pytest.fixture
def settings(settings_for: Callable[..., Settings]) -> Settings:
    return settings_for(s3_conditional_writes="on")


@pytest.fixture
async def http(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(settings) as client:
        yield client


async def create(http: httpx.AsyncClient, length: int, **extra: str) -> str:
    response = await http.post(
        "/files/",
        headers={
            **TUS,
            "Upload-Length": str(length),
            "Upload-Metadata": metadata(filename="a.bin"),
            **extra,
        },
    )
    assert response.status_code == 201, response.text
    location = response.headers["location"]
    assert location.startswith("/files/") and len(location) == len("/files/") + 32
    return location


async def patch(
    http: httpx.AsyncClient, url: str, offset: int, data: bytes, **extra: str
) -> httpx.Response:
    return await http.patch(
        url, content=data, headers={**TUS, **OCTETS, "Upload-Offset": str(offset), **extra}
    )


def bookkeeping(bucket: Bucket) -> list[str]:
    stored = bucket.keys()
    return [key for key in stored if key.startswith(RESUMABLE_PREFIX)]


def only_state_left(bucket: Bucket, url: str) -> dict[str, Any]:
    """After completion: no multipart upload, no tail; the completed state record only."""
    upload_id = url.rsplit("/", 1)[1]
    assert bucket.incomplete_uploads() == []
    assert bookkeeping(bucket) == [f"{RESUMABLE_PREFIX}{upload_id}/state.json"]
    state: dict[str, Any] = json.loads(bucket.read(f"{RESUMABLE_PREFIX}{upload_id}/state.json"))
    assert state["completed"] is not None and state["tail"] is None
    return state


async def test_a_tus_upload_in_one_patch_is_stored_intact(
    http: httpx.AsyncClient, bucket: Bucket
) -> None:
    data = os.urandom(12 * MiB + 123)
    url = await create(http, len(data))
    response = await patch(http, url, 0, data)
    assert response.status_code == 204, response.text
    assert response.headers["upload-offset"] == str(len(data))
    assert response.headers["tus-resumable"] == "1.0.0"
    state = only_state_left(bucket, url)
    record = state["completed"]
    assert record["sha256"] == hashlib.sha256(data).hexdigest()
    assert bucket.sha256(record["key"]) == hashlib.sha256(data).hexdigest()
    assert record["key"].endswith("/a.bin") and record["parts"] == 3


async def test_small_patches_join_through_the_tail(http: httpx.AsyncClient, bucket: Bucket) -> None:
    data = os.urandom(13 * MiB)
    url = await create(http, len(data))
    offset = 0
    for size in (1 * MiB, 3 * MiB, 2 * MiB, 4 * MiB, 3 * MiB):
        response = await patch(http, url, offset, data[offset : offset + size])
        assert response.status_code == 204, response.text
        offset += size
        assert response.headers["upload-offset"] == str(offset)
        head = await http.head(url, headers=TUS)
        assert head.status_code == 200 and head.headers["upload-offset"] == str(offset)
        tails = [k for k in bookkeeping(bucket) if "/tail-" in k]
        assert len(tails) <= 1  # the old tail is gone once a new one replaces it
    record = only_state_left(bucket, url)["completed"]
    assert record["sha256"] == hashlib.sha256(data).hexdigest()
    assert bucket.sha256(record["key"]) == hashlib.sha256(data).hexdigest()


async def test_a_wrong_offset_gets_409_with_the_right_one(
    http: httpx.AsyncClient, bucket: Bucket
) -> None:
    url = await create(http, 10)
    assert (await patch(http, url, 0, b"abcd")).status_code == 204
    response = await patch(http, url, 2, b"cdef")
    assert_error(response, 409, "offset_mismatch")
    assert response.headers["upload-offset"] == "4"


async def test_sha1_checksum_is_verified_and_a_mismatch_keeps_nothing(
    http: httpx.AsyncClient, bucket: Bucket
) -> None:
    data = os.urandom(7 * MiB)
    url = await create(http, len(data))
    first = data[: 6 * MiB]  # crosses a part boundary: a part is written, then discarded
    wrong = base64.b64encode(hashlib.sha1(b"other").digest()).decode()
    response = await patch(http, url, 0, first, **{"Upload-Checksum": f"sha1 {wrong}"})
    assert_error(response, 460, "checksum_mismatch")
    head = await http.head(url, headers=TUS)
    assert head.headers["upload-offset"] == "0"
    right = base64.b64encode(hashlib.sha1(first).digest()).decode()
    response = await patch(http, url, 0, first, **{"Upload-Checksum": f"sha1 {right}"})
    assert response.status_code == 204, response.text
    md5 = base64.b64encode(hashlib.md5(data[6 * MiB :]).digest()).decode()
    response = await patch(http, url, 6 * MiB, data[6 * MiB :], **{"Upload-Checksum": f"md5 {md5}"})
    assert response.status_code == 204, response.text
    record = only_state_left(bucket, url)["completed"]
    assert bucket.sha256(record["key"]) == hashlib.sha256(data).hexdigest()


async def test_unknown_checksum_algorithm_is_400(http: httpx.AsyncClient) -> None:
    url = await create(http, 4)
    response = await patch(http, url, 0, b"abcd", **{"Upload-Checksum": "crc99 AAAA"})
    assert_error(response, 400, "unsupported_checksum")


async def test_termination_leaves_nothing(http: httpx.AsyncClient, bucket: Bucket) -> None:
    url = await create(http, 20 * MiB)
    assert (await patch(http, url, 0, os.urandom(7 * MiB))).status_code == 204
    assert bucket.incomplete_uploads() != [] and bookkeeping(bucket) != []
    response = await http.delete(url, headers=TUS)
    assert response.status_code == 204
    bucket.assert_clean()
    head = await http.head(url, headers=TUS)
    assert head.status_code == 404


async def test_ietf_draft_05_creation_and_completing_append(
    http: httpx.AsyncClient, bucket: Bucket
) -> None:
    data = os.urandom(6 * MiB)
    response = await http.post(
        "/files/", headers={**IETF_05, "Upload-Complete": "?0", "Upload-Length": str(len(data))}
    )
    assert response.status_code == 201, response.text
    assert response.headers["upload-complete"] == "?0"
    url = response.headers["location"]
    response = await http.patch(
        url,
        content=data[:1000],
        headers={
            **IETF_05,
            "Upload-Offset": "0",
            "Upload-Complete": "?0",
            "Content-Type": "application/partial-upload",
        },
    )
    assert response.status_code == 204 and response.headers["upload-offset"] == "1000"
    head = await http.head(url, headers=IETF_05)
    assert head.status_code == 204 and head.headers["upload-complete"] == "?0"
    response = await http.patch(
        url,
        content=data[1000:],
        headers={
            **IETF_05,
            "Upload-Offset": "1000",
            "Upload-Complete": "?1",
            "Content-Type": "application/partial-upload",
        },
    )
    assert response.status_code == 200, response.text
    assert response.headers["upload-complete"] == "?1"
    record = response.json()["object"]
    assert record["sha256"] == hashlib.sha256(data).hexdigest()
    assert bucket.sha256(record["key"]) == record["sha256"]
    only_state_left(bucket, url)


async def test_ietf_draft_03_length_from_the_completing_append(
    http: httpx.AsyncClient, bucket: Bucket
) -> None:
    response = await http.post("/files/", headers={**IETF_03, "Upload-Complete": "?0"})
    assert response.status_code == 201, response.text
    url = response.headers["location"]
    data = os.urandom(11 * MiB)
    response = await http.patch(
        url, content=data, headers={**IETF_03, "Upload-Offset": "0", "Upload-Complete": "?1"}
    )
    assert response.status_code == 200, response.text
    record = response.json()["object"]
    assert bucket.sha256(record["key"]) == hashlib.sha256(data).hexdigest()


async def test_a_second_append_while_one_runs_is_423(
    http: httpx.AsyncClient, bucket: Bucket
) -> None:
    url = await create(http, 8 * MiB)
    started, go_on = asyncio.Event(), asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield b"x" * MiB
        started.set()
        await go_on.wait()
        yield b"y" * MiB

    first = asyncio.ensure_future(
        http.patch(url, content=slow_body(), headers={**TUS, **OCTETS, "Upload-Offset": "0"})
    )
    await started.wait()
    second = await patch(http, url, 0, b"z" * 10)
    assert_error(second, 423, "upload_locked")
    assert second.headers["upload-offset"] == "0"  # where to resume once it is free
    go_on.set()
    response = await first
    assert response.status_code == 204, response.text
    assert response.headers["upload-offset"] == str(2 * MiB)


async def test_upload_length_over_the_limit_is_413(settings_for: Callable[..., Settings]) -> None:
    async with app_client(settings_for(max_body_bytes=1000)) as http:
        response = await http.post("/files/", headers={**TUS, "Upload-Length": "1001"})
        assert_error(response, 413, "body_too_large")


async def test_no_protocol_header_is_412(http: httpx.AsyncClient) -> None:
    response = await http.post("/files/", headers={"Upload-Length": "10"})
    assert_error(response, 412, "unsupported_protocol")
    assert response.headers["tus-version"] == "1.0.0"


def rewrite_state(bucket: Bucket, url: str, **changes: Any) -> None:
    """Change the upload's state.json in the bucket, as time or another instance would."""
    key = f"{RESUMABLE_PREFIX}{url.rsplit('/', 1)[1]}/state.json"
    state = json.loads(bucket.read(key))
    state.update(changes)
    bucket.s3.put_object(Bucket=bucket.name, Key=key, Body=json.dumps(state).encode())


async def test_an_expired_upload_is_410_in_tus_and_404_in_ietf(
    http: httpx.AsyncClient, bucket: Bucket
) -> None:
    url = await create(http, 100)
    rewrite_state(bucket, url, expires=time.time() - 1)
    assert (await http.head(url, headers=TUS)).status_code == 410
    assert_error(await patch(http, url, 0, b"x"), 410, "upload_expired")
    response = await http.patch(
        url, content=b"x", headers={**IETF_05, "Upload-Offset": "0", "Upload-Complete": "?0"}
    )
    assert_error(response, 404, "upload_expired")


async def test_an_unknown_or_malformed_id_is_404(http: httpx.AsyncClient) -> None:
    for url in ("/files/" + "0" * 32, "/files/not-an-id"):
        assert (await http.head(url, headers=TUS)).status_code == 404
        assert_error(await patch(http, url, 0, b"x"), 404, "upload_not_found")


async def test_another_tokens_upload_is_not_found(
    settings_for: Callable[..., Settings], bucket: Bucket
) -> None:
    settings = settings_for(
        s3_conditional_writes="on",
        auth_tokens=("alice:token-a-0123456789", "bob:token-b-0123456789"),
    )
    async with app_client(settings) as http:
        alice = {"Authorization": "Bearer token-a-0123456789"}
        bob = {"Authorization": "Bearer token-b-0123456789"}
        assert_error(
            await http.post("/files/", headers={**TUS, "Upload-Length": "5"}), 401, "unauthorized"
        )
        url = await create(http, 5, **alice)
        assert (await http.head(url, headers={**TUS, **bob})).status_code == 404
        assert_error(await patch(http, url, 0, b"hello", **bob), 404, "upload_not_found")
        assert (await patch(http, url, 0, b"hello", **alice)).status_code == 204


async def test_a_tus_upload_of_length_zero_is_complete_at_creation(
    http: httpx.AsyncClient, bucket: Bucket
) -> None:
    response = await http.post(
        "/files/",
        headers={**TUS, "Upload-Length": "0", "Upload-Metadata": metadata(filename="empty.txt")},
    )
    assert response.status_code == 201, response.text
    record = response.json()["object"]
    assert record["size"] == 0 and record["sha256"] == hashlib.sha256(b"").hexdigest()
    assert bucket.read(record["key"]) == b""
    only_state_left(bucket, response.headers["location"])


async def test_creation_with_upload_takes_the_first_bytes(
    http: httpx.AsyncClient, bucket: Bucket
) -> None:
    data = os.urandom(3 * MiB)
    response = await http.post(
        "/files/",
        content=data[: 2 * MiB],
        headers={**TUS, **OCTETS, "Upload-Length": str(len(data))},
    )
    assert response.status_code == 201, response.text
    assert response.headers["upload-offset"] == str(2 * MiB)
    url = response.headers["location"]
    assert (await patch(http, url, 2 * MiB, data[2 * MiB :])).status_code == 204
    record = only_state_left(bucket, url)["completed"]
    assert bucket.sha256(record["key"]) == hashlib.sha256(data).hexdigest()


async def test_bytes_past_the_length_are_413_and_none_is_kept(
    http: httpx.AsyncClient, bucket: Bucket
) -> None:
    url = await create(http, 10)
    assert_error(await patch(http, url, 0, b"x" * 11), 413, "upload_length_exceeded")

    async def chunked() -> AsyncIterator[bytes]:
        yield b"abcdef"
        yield b"ghijkl"  # the 11th byte arrives here

    response = await http.patch(
        url, content=chunked(), headers={**TUS, **OCTETS, "Upload-Offset": "0"}
    )
    assert_error(response, 413, "upload_length_exceeded")
    head = await http.head(url, headers=TUS)
    assert head.headers["upload-offset"] == "0"
    assert [k for k in bookkeeping(bucket) if "/tail-" in k] == []


async def test_an_ietf_append_to_a_completed_upload_is_400(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/files/", content=b"all of it", headers={**IETF_03, "Upload-Complete": "?1"}
    )
    assert response.status_code == 201, response.text
    assert response.headers["upload-complete"] == "?1"
    url = response.headers["location"]
    head = await http.head(url, headers=IETF_03)
    assert head.headers["upload-complete"] == "?1" and head.headers["upload-offset"] == "9"
    response = await http.patch(
        url, content=b"more", headers={**IETF_03, "Upload-Offset": "9", "Upload-Complete": "?1"}
    )
    assert_error(response, 400, "upload_completed")


async def test_tus_requests_are_checked_before_the_body(http: httpx.AsyncClient) -> None:
    url = await create(http, 10)
    response = await http.patch(
        url, content=b"abc", headers={**TUS, "Upload-Offset": "0", "Content-Type": "text/plain"}
    )
    assert_error(response, 415, "unsupported_media_type")
    assert_error(await patch(http, url, 0, b"abc", **{"Upload-Offset": "x"}), 400, "invalid_header")
    response = await http.post(
        "/files/", headers={**TUS, "Upload-Length": "5", "Upload-Metadata": "filename ***"}
    )
    assert_error(response, 400, "invalid_metadata")
    response = await http.post("/files/", headers={**TUS, "Upload-Defer-Length": "1"})
    assert_error(response, 400, "invalid_header")


async def test_options_tells_what_the_server_speaks(
    settings_for: Callable[..., Settings],
) -> None:
    async with app_client(settings_for(max_body_bytes=1000)) as http:
        response = await http.options("/files/")
    assert response.status_code == 204
    assert response.headers["tus-version"] == "1.0.0"
    assert "checksum" in response.headers["tus-extension"].split(",")
    assert response.headers["tus-checksum-algorithm"] == "md5,sha1,sha256,sha512"
    assert response.headers["tus-max-size"] == "1000"
    assert response.headers["upload-limit"] == "min-size=0,max-size=1000"


async def test_method_override_is_honoured(http: httpx.AsyncClient, bucket: Bucket) -> None:
    url = await create(http, 4)
    response = await http.post(
        url,
        content=b"abcd",
        headers={**TUS, **OCTETS, "Upload-Offset": "0", "X-HTTP-Method-Override": "PATCH"},
    )
    assert response.status_code == 204 and response.headers["upload-offset"] == "4"


async def test_the_ietf_drafts_get_409_where_tus_gets_423(
    http: httpx.AsyncClient, bucket: Bucket
) -> None:
    response = await http.post("/files/", headers={**IETF_05, "Upload-Complete": "?0"})
    url = response.headers["location"]
    rewrite_state(bucket, url, lease={"holder": "another", "until": time.time() + 60})
    response = await http.patch(
        url, content=b"x", headers={**IETF_05, "Upload-Offset": "0", "Upload-Complete": "?0"}
    )
    assert_error(response, 409, "upload_locked")
    assert response.headers["upload-offset"] == "0"
    assert_error(await patch(http, url, 0, b"x"), 423, "upload_locked")  # tus on the same upload


async def test_an_empty_ietf_append_completes_an_upload_from_its_tail(
    http: httpx.AsyncClient, bucket: Bucket
) -> None:
    data = os.urandom(7 * MiB)
    response = await http.post("/files/", headers={**IETF_05, "Upload-Complete": "?0"})
    url = response.headers["location"]
    ietf = {**IETF_05, "Content-Type": "application/partial-upload"}
    response = await http.patch(
        url, content=data, headers={**ietf, "Upload-Offset": "0", "Upload-Complete": "?0"}
    )
    assert response.status_code == 204  # a part, and 2 MiB in the tail
    response = await http.patch(
        url, content=b"", headers={**ietf, "Upload-Offset": str(len(data)), "Upload-Complete": "?1"}
    )
    assert response.status_code == 200, response.text
    record = response.json()["object"]
    assert record["size"] == len(data) and record["sha256"] == hashlib.sha256(data).hexdigest()
    assert bucket.sha256(record["key"]) == record["sha256"]
    only_state_left(bucket, url)


def counted(event: str) -> float:
    return REGISTRY.get_sample_value("upload_resumable_total", {"event": event}) or 0.0


async def test_metrics_count_what_resumable_uploads_do(http: httpx.AsyncClient) -> None:
    before = {e: counted(e) for e in ("created", "resumed", "completed", "terminated", "conflict")}
    appended = REGISTRY.get_sample_value("upload_resumable_appended_bytes_total") or 0.0
    url = await create(http, 10)
    assert (await patch(http, url, 0, b"abcd")).status_code == 204
    assert (await http.head(url, headers=TUS)).status_code == 200  # a client about to resume
    assert (await patch(http, url, 4, b"efghij")).status_code == 204
    other = await create(http, 10)
    assert (await http.delete(other, headers=TUS)).status_code == 204
    after = {e: counted(e) - before[e] for e in before}
    assert after == {"created": 2, "resumed": 1, "completed": 1, "terminated": 1, "conflict": 0}
    assert (
        REGISTRY.get_sample_value("upload_resumable_appended_bytes_total") or 0
    ) - appended == 10


async def test_a_long_append_renews_its_lease_and_keeps_the_upload(
    settings_for: Callable[..., Settings], bucket: Bucket
) -> None:
    """An append that outlasts UPLOAD_RESUMABLE_LEASE renews it: a request to another
    instance after the first lease would have run out is still refused (moto enforces
    If-Match), and the append then succeeds."""
    settings = settings_for(s3_conditional_writes="on", resumable_lease=3)
    async with app_client(settings) as http, app_client(settings) as other:
        url = await create(http, 2 * MiB)
        key = f"{RESUMABLE_PREFIX}{url.rsplit('/', 1)[1]}/state.json"

        def lease_until() -> float:
            lease = json.loads(bucket.read(key))["lease"]
            return float(lease["until"]) if lease else 0.0

        outlived, checked = asyncio.Event(), asyncio.Event()

        async def body() -> AsyncIterator[bytes]:
            yield b"a" * MiB
            taken = await asyncio.to_thread(lease_until)
            deadline = time.monotonic() + 30
            # Bounded waits: for a renewal past the first lease's end, then for that end.
            while await asyncio.to_thread(lease_until) <= taken + 1:
                assert time.monotonic() < deadline, "the lease was never renewed"
                await asyncio.sleep(0.1)
            await asyncio.sleep(max(taken - time.time(), 0) + 0.05)  # time must pass here
            outlived.set()
            await checked.wait()
            yield b"b" * MiB

        running = asyncio.ensure_future(
            http.patch(url, content=body(), headers={**TUS, **OCTETS, "Upload-Offset": "0"})
        )
        await outlived.wait()
        assert_error(await patch(other, url, 0, b"x"), 423, "upload_locked")
        checked.set()
        response = await running
        assert response.status_code == 204, response.text
        assert response.headers["upload-offset"] == str(2 * MiB)


async def test_get_tells_a_tus_client_what_was_stored(
    http: httpx.AsyncClient, bucket: Bucket
) -> None:
    """tus answers the completing PATCH with an empty 204: GET gives the stored object."""
    data = os.urandom(1000)
    url = await create(http, len(data))
    response = await http.get(url, headers=TUS)
    assert response.status_code == 200 and response.json()["complete"] is False
    assert response.headers["cache-control"] == "no-store"
    assert (await patch(http, url, 0, data)).status_code == 204
    response = await http.get(url)  # no protocol header needed
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["complete"] is True and answer["offset"] == len(data)
    assert answer["object"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert bucket.sha256(answer["object"]["key"]) == answer["object"]["sha256"]
    assert_error(await http.get("/files/" + "f" * 32), 404, "upload_not_found")
