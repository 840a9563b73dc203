"""`python -m app sweep` and resumable uploads: a live one is never aborted, however old its
multipart upload looks (moto reports every upload as initiated in 2010); an expired one is
removed whole."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable

import pytest

from app.ops.sweep import sweep
from app.settings import RESUMABLE_PREFIX, Settings
from harness.store import Bucket, MiB
from tests.integration.conftest import app_client

pytestmark = pytest.mark.anyio

TUS = {"Tus-Resumable": "1.0.0"}


async def start_resumable(settings: Settings, length: int, sent: int) -> str:
    async with app_client(settings) as http:
        created = await http.post("/files/", headers={**TUS, "Upload-Length": str(length)})
        url = created.headers["location"]
        response = await http.patch(
            url,
            content=os.urandom(sent),
            headers={
                **TUS,
                "Upload-Offset": "0",
                "Content-Type": "application/offset+octet-stream",
            },
        )
        assert response.status_code == 204, response.text
    return url


async def test_a_live_resumable_upload_survives_the_sweep(
    settings_for: Callable[..., Settings], bucket: Bucket
) -> None:
    settings = settings_for(s3_conditional_writes="on")
    await start_resumable(settings, 20 * MiB, 7 * MiB)  # a part and a tail
    orphan = bucket.s3.create_multipart_upload(Bucket=bucket.name, Key="uploads/lost/a.bin")
    lines: list[str] = []

    found = await sweep(settings, dt.timedelta(0), apply=True, report=lines.append)

    assert [o.upload_id for o in found] == [orphan["UploadId"]]
    assert len(bucket.incomplete_uploads()) == 1  # the resumable upload's
    stored = bucket.keys()
    assert any(key.endswith("/state.json") for key in stored)
    assert "0 expired resumable upload(s) removed" in lines


async def test_an_expired_resumable_upload_is_removed_whole(
    settings_for: Callable[..., Settings], bucket: Bucket
) -> None:
    settings = settings_for(s3_conditional_writes="on")
    url = await start_resumable(settings, 20 * MiB, 7 * MiB)
    upload_id = url.rsplit("/", 1)[1]
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=settings.resumable_expiry + 60)
    lines: list[str] = []

    await sweep(settings, dt.timedelta(days=3650), apply=False, report=lines.append, now=later)
    assert any(f"would remove expired resumable upload {upload_id}" in line for line in lines)
    assert len(bucket.incomplete_uploads()) == 1  # a dry run changes nothing

    await sweep(settings, dt.timedelta(days=3650), apply=True, report=lines.append, now=later)
    assert "1 expired resumable upload(s) removed" in lines
    bucket.assert_clean()


async def test_a_completed_uploads_state_goes_at_its_expiry(
    settings_for: Callable[..., Settings], bucket: Bucket
) -> None:
    settings = settings_for(s3_conditional_writes="on")
    await start_resumable(settings, 3 * MiB, 3 * MiB)
    stored = bucket.keys()
    (key,) = [k for k in stored if not k.startswith(RESUMABLE_PREFIX)]
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=settings.resumable_expiry + 60)

    await sweep(settings, dt.timedelta(days=1), apply=True, report=lambda _: None, now=later)

    assert bucket.keys() == [key]  # the object stays; its upload's state is gone
