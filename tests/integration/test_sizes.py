"""Sizes the table in tests/integration/test_uploads.py does not reach (../shared/TESTING.md,
"Sizes and shapes"): a file of exactly k parts for k > 1, whose last part is full, so the
body's end and a part's end coincide. And bodies of unknown length (chunked): their parts
grow, and where a store takes only equal parts, what does not fit is refused.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import httpx
import pytest

from app.settings import Settings
from app.units import MiB
from harness.forms import FilePart, chunked, content_type, multipart_body
from harness.store import Bucket
from tests.integration.conftest import PART, app_client, assert_error, post_chunked

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("stream", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("k", [3, 4])  # over the 12 MiB threshold: multipart either way
async def test_exactly_k_parts(
    client: httpx.AsyncClient, bucket: Bucket, k: int, stream: bool
) -> None:
    data = (bytes(range(256)) * (k * PART // 256 + 1))[: k * PART]
    body = multipart_body([FilePart("file", "k.bin", data)])
    response = await client.post(
        "/uploads",
        content=chunked(body) if stream else body,
        headers={"content-type": content_type()},
    )
    assert response.status_code == 201, response.text
    stored = response.json()["files"][0]
    assert (stored["strategy"], stored["parts"]) == ("multipart", k)
    bucket.assert_intact(stored, data)
    assert bucket.keys() == [stored["key"]]


async def test_a_chunked_body_s_parts_grow_so_more_fits_than_equal_parts_would(
    settings_for: Callable[..., Settings], bucket: Bucket
) -> None:
    """No Content-Length, at most 10 parts of 5 MiB: 60 MiB would need 12 equal parts; growing
    ones (5, 10, 20, then the rest) carry it in 4 (app/storage/partsize.py)."""
    data = random.Random(3).randbytes(60 * MiB)
    async with app_client(settings_for(s3_max_parts=10)) as http:
        response = await post_chunked(http, data)
    assert response.status_code == 201, response.text
    stored = response.json()["files"][0]
    assert (stored["strategy"], stored["parts"]) == ("multipart", 4)
    bucket.assert_intact(stored, data)


async def test_an_equal_parts_store_refuses_a_chunked_body_past_its_parts(
    settings_for: Callable[..., Settings], bucket: Bucket
) -> None:
    """S3_PROVIDER=r2 (equal parts) at most 10 parts of 5 MiB: past 50 MiB of unknown length
    the answer is 413, and nothing is left in the bucket."""
    data = random.Random(4).randbytes(50 * MiB + 1)
    async with app_client(settings_for(s3_provider="r2", s3_max_parts=10)) as http:
        response = await post_chunked(http, data)
    assert_error(response, 413, "body_too_large")
    assert "10 parts hold here" in response.json()["error"]["message"]
    bucket.assert_clean()
