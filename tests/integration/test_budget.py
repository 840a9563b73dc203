"""UPLOAD_MEMORY_BUDGET and UPLOAD_MAX_CONCURRENT through the app, against moto on loopback."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from app.client.formbody import FormField
from app.settings import Settings
from app.storage.client import S3Client
from harness.forms import FilePart, content_type, multipart_body
from harness.store import Bucket, sha256
from tests.integration.conftest import PART, app_client

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024


async def trickle(body: bytes, chunk: int = 256 * 1024) -> AsyncIterator[bytes]:
    """The body in chunks, yielding to the loop between them like a network client."""
    for start in range(0, len(body), chunk):
        yield body[start : start + chunk]
        await asyncio.sleep(0)


async def test_sixteen_uploads_under_a_small_budget_all_arrive_intact(
    settings_for: Callable[..., Settings], bucket: Bucket
) -> None:
    budget = 3 * PART
    rng = random.Random(7)
    # A mix: large multipart files, small single-put files, and requests holding several
    # finished small files (which must be sent, not held, when memory runs short).
    forms: list[list[FilePart]] = []
    for i in range(16):
        if i % 4 == 0:
            files = [FilePart("f", f"big{i}.bin", rng.randbytes(3 * PART + 12345))]
        elif i % 4 == 1:
            files = [FilePart("f", f"mid{i}.bin", rng.randbytes(PART + 999))]
        else:
            files = [FilePart("f", f"s{i}-{n}.bin", rng.randbytes(1 * MiB + n)) for n in range(4)]
        forms.append(files)

    served = app_client(settings_for(memory_budget=budget))
    async with served as http:
        storage: S3Client = served.app.state.storage

        async def send(files: list[FilePart]) -> httpx.Response:
            body = multipart_body([FormField("title", "t"), *files])
            return await http.post(
                "/uploads",
                content=trickle(body),
                headers={"content-type": content_type(), "content-length": str(len(body))},
            )

        responses = await asyncio.wait_for(asyncio.gather(*(send(f) for f in forms)), 120)
        assert storage.budget is not None
        assert storage.budget.peak <= budget  # never more buffered than the budget
        assert storage.budget.used == 0  # and everything given back
        assert storage.budget.peak > 2 * PART  # the budget was actually the constraint

    small = [s for r in responses for s in r.json()["files"] if s["filename"].startswith("s")]
    # Finished small files held for one PutObject were sent as parts when memory ran short.
    assert any(s["strategy"] == "multipart" and s["parts"] == 1 for s in small)
    for files, response in zip(forms, responses, strict=True):
        assert response.status_code == 201, response.text
        stored = response.json()["files"]
        assert [s["filename"] for s in stored] == [f.filename for f in files]
        for part, answer in zip(files, stored, strict=True):
            assert answer["sha256"] == sha256(part.data)
            bucket.assert_intact(answer, part.data)
    assert len(bucket.keys()) == sum(len(files) for files in forms)
    assert bucket.incomplete_uploads() == []


async def test_a_failed_upload_gives_its_memory_back(
    settings_for: Callable[..., Settings], bucket: Bucket
) -> None:
    data = random.Random(1).randbytes(3 * PART)
    body = multipart_body([FilePart("f", "a.bin", data)])
    truncated = body[: len(body) // 2]  # the client stops halfway: 400, aborted
    served = app_client(settings_for(memory_budget=2 * PART))
    async with served as http:
        response = await http.post(
            "/uploads", content=truncated, headers={"content-type": content_type()}
        )
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "malformed_multipart"
        budget = served.app.state.storage.budget
        assert budget is not None and budget.used == 0
    bucket.assert_clean()


async def test_uploads_past_max_concurrent_get_503_with_retry_after(
    settings_for: Callable[..., Settings], bucket: Bucket
) -> None:
    data = random.Random(2).randbytes(2 * PART)
    body = multipart_body([FilePart("f", "a.bin", data)])
    half = len(body) // 2
    release = asyncio.Event()

    async def held_body() -> AsyncIterator[bytes]:
        yield body[:half]
        await release.wait()
        yield body[half:]

    headers = {"content-type": content_type(), "content-length": str(len(body))}
    served = app_client(settings_for(max_concurrent=1))
    async with served as http:
        first = asyncio.ensure_future(http.post("/uploads", content=held_body(), headers=headers))
        state = served.app.state
        for _ in range(200):
            if state.uploads_running == 1:
                break
            await asyncio.sleep(0.01)
        assert state.uploads_running == 1

        refused = await http.post("/uploads", content=body, headers=headers)
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "server_busy"
        assert refused.headers["retry-after"] == "5"

        release.set()
        stored = await asyncio.wait_for(first, 60)
        assert stored.status_code == 201
        bucket.assert_intact(stored.json()["files"][0], data)

        again = await http.post("/uploads", content=body, headers=headers)
        assert again.status_code == 201, again.text
        assert state.uploads_running == 0
    assert len(bucket.keys()) == 2  # the refused request stored nothing
    assert bucket.incomplete_uploads() == []
