"""Sizes the table in tests/integration/test_uploads.py does not reach (../shared/TESTING.md,
"Sizes and shapes"): a file of exactly k parts for k > 1, whose last part is full, so the
body's end and a part's end coincide.
"""

from __future__ import annotations

import httpx
import pytest

from harness.forms import FilePart, chunked, content_type, multipart_body
from harness.store import Bucket
from tests.integration.conftest import PART

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
