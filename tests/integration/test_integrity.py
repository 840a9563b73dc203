"""What goes over the wire to a real store for integrity: checksums and payload signing.

The requests are seen by tests/faulty_s3.py's proxy (forwarding untouched) in front of
`rclone serve s3`, which verifies Content-MD5 and answers MD5 ETags.
"""

from __future__ import annotations

import base64
import hashlib
import random
import re
from collections.abc import Callable

import pytest

from app.settings import Settings
from tests.faulty_s3 import FaultyS3
from tests.integration.conftest import PART, app_client
from tests.support import Bucket, FilePart, RcloneS3, chunked, content_type, multipart_body

pytestmark = pytest.mark.anyio

DATA = random.Random(11).randbytes(2 * PART + 999)


@pytest.fixture
def bucket(rclone: RcloneS3) -> Bucket:
    return Bucket(rclone.endpoint)


@pytest.fixture
def app_endpoint(proxy: FaultyS3) -> str:
    return proxy.endpoint


@pytest.mark.parametrize("signing", ["auto", "off"])
async def test_each_part_carries_its_content_md5_and_payload_signing_follows_the_setting(
    settings_for: Callable[..., Settings], bucket: Bucket, proxy: FaultyS3, signing: str
) -> None:
    body = multipart_body([FilePart("f", "a.bin", DATA)])
    async with app_client(settings_for(s3_payload_signing=signing)) as http:
        response = await http.post(
            "/uploads", content=chunked(body), headers={"content-type": content_type()}
        )
    assert response.status_code == 201, response.text
    bucket.assert_intact(response.json()["files"][0], DATA)
    parts = [headers for name, headers in proxy.requests if name == "UploadPart"]
    assert len(parts) == 3
    sizes = [PART, PART, len(DATA) - 2 * PART]
    pieces = [DATA[:PART], DATA[PART : 2 * PART], DATA[2 * PART :]]
    for headers, piece, size in zip(parts, pieces, sizes, strict=True):
        assert int(headers["content-length"]) == size
        assert headers["content-md5"] == base64.b64encode(hashlib.md5(piece).digest()).decode()
        signed = headers["x-amz-content-sha256"]
        if signing == "off":
            assert signed == "UNSIGNED-PAYLOAD"
        else:  # over http:// botocore signs the payload: its SHA-256 is in the signature
            assert re.fullmatch("[0-9a-f]{64}", signed)
            assert signed == hashlib.sha256(piece).hexdigest()
