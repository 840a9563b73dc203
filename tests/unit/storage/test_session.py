"""The botocore configuration, and what botocore then puts on a part's request.

The requests are signed by a real aiobotocore client and stopped at `before-send`, so no
network is needed: what is checked is botocore's own behaviour under the service's config
(HTTPS cannot be served by the integration tests' stores).
"""

from __future__ import annotations

import base64
from typing import Any

import google_crc32c
import pytest
from aiobotocore.session import get_session

from app.settings import Settings
from app.storage.session import client_config

pytestmark = pytest.mark.anyio

BODY = b"x" * 100_000
CRC32C = base64.b64encode(google_crc32c.value(BODY).to_bytes(4, "big")).decode()


class Stop(Exception):
    """Raised at before-send: the request is signed and complete, and goes nowhere."""


async def sent_headers(settings: Settings, endpoint: str, **checks: str) -> dict[str, str]:
    """The headers of an UploadPart as botocore would send them under `settings`."""
    seen: dict[str, str] = {}

    def before_send(request: Any, **_: Any) -> None:
        seen.update(
            {
                k.lower(): v.decode() if isinstance(v, bytes) else v
                for k, v in request.headers.items()
            }
        )
        raise Stop

    async with get_session().create_client(
        "s3",
        region_name="us-east-1",
        endpoint_url=endpoint,
        aws_access_key_id="key",
        aws_secret_access_key="secret",
        config=client_config(settings),
    ) as client:
        client.meta.events.register("before-send.s3.UploadPart", before_send)
        with pytest.raises(Stop):
            await client.upload_part(
                Bucket="b", Key="k", UploadId="u", PartNumber=1, Body=BODY, **checks
            )
    return seen


@pytest.mark.parametrize("mode", ["when_required", "when_supported"])
@pytest.mark.parametrize("endpoint", ["http://store.invalid", "https://store.invalid"])
async def test_botocore_sends_the_crc32c_given_and_adds_no_checksum_of_its_own(
    endpoint: str, mode: str
) -> None:
    settings = Settings(s3_bucket="b", s3_provider="aws", s3_checksum_mode=mode)
    headers = await sent_headers(settings, endpoint, ChecksumCRC32C=CRC32C)
    assert headers["x-amz-checksum-crc32c"] == CRC32C
    assert [h for h in headers if h.startswith("x-amz-checksum")] == ["x-amz-checksum-crc32c"]
    assert headers.get("x-amz-sdk-checksum-algorithm", "CRC32C") == "CRC32C"
    assert "x-amz-trailer" not in headers and "content-md5" not in headers
    assert "aws-chunked" not in headers.get("content-encoding", "")
    assert headers["content-length"] == str(len(BODY))


@pytest.mark.parametrize(
    ("provider", "endpoint", "signing", "unsigned"),
    [
        # `auto` over HTTPS: the CRC32C protects the part, as Content-MD5 does for botocore.
        ("aws", "https://store.invalid", "auto", True),
        ("minio", "https://store.invalid", "auto", True),
        ("generic", "https://store.invalid", "auto", True),  # botocore's own rule
        # `auto` over http://: signed, whatever the checksum (botocore's rule).
        ("aws", "http://store.invalid", "auto", False),
        ("generic", "http://store.invalid", "auto", False),
        ("aws", "https://store.invalid", "on", False),
        ("aws", "http://store.invalid", "off", True),
    ],
)
async def test_payload_signing_over_https_follows_the_checksum_sent(
    provider: str, endpoint: str, signing: str, unsigned: bool
) -> None:
    settings = Settings(
        s3_bucket="b",
        s3_provider=provider,
        s3_endpoint_url=endpoint,
        s3_payload_signing=signing,
    )
    checks = {"ContentMD5": "x"} if provider == "generic" else {"ChecksumCRC32C": CRC32C}
    headers = await sent_headers(settings, endpoint, **checks)
    expected = "UNSIGNED-PAYLOAD" if unsigned else "<sha256>"
    signed = headers["x-amz-content-sha256"]
    assert (signed if signed == "UNSIGNED-PAYLOAD" else "<sha256>") == expected


def test_no_endpoint_means_aws_over_https() -> None:
    config = client_config(Settings(s3_bucket="b"))
    assert config.s3["payload_signing_enabled"] is False
