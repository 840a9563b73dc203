"""Opening the S3 client once per process, with settings that work on AWS, B2 and MinIO."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aioboto3
from aiobotocore.config import AioConfig

from app import metrics
from app.settings import Settings
from app.storage.budget import MemoryBudget
from app.storage.client import S3Client


def client_config(settings: Settings) -> AioConfig:
    """botocore configuration: retries with backoff, a pool sized for concurrent parts."""
    s3: dict[str, object] = {"addressing_style": settings.s3_addressing_style}
    if settings.s3_payload_signing != "auto":
        # botocore's S3 signer honours this over http:// too (its default signs there).
        s3["payload_signing_enabled"] = settings.s3_payload_signing == "on"
    elif settings.provider.part_checksum == "crc32c" and _https(settings.s3_endpoint_url):
        # `auto` leaves HTTPS parts unsigned when a checksum protects them. botocore's rule
        # sees only Content-MD5 or a checksum it computed itself, not the CRC32C header we
        # hand it: without this it would SHA-256 every part over HTTPS.
        s3["payload_signing_enabled"] = False
    return AioConfig(
        signature_version="s3v4",
        s3=s3,
        retries={"mode": "standard", "max_attempts": settings.s3_max_attempts},
        max_pool_connections=settings.s3_max_pool_connections,
        connect_timeout=10,
        # CompleteMultipartUpload of a very large object can take minutes on AWS.
        read_timeout=600,
        request_checksum_calculation=settings.s3_checksum_mode,
        response_checksum_validation=settings.s3_checksum_mode,
    )


def _https(endpoint_url: str | None) -> bool:
    """Whether S3 calls go over TLS (no endpoint: AWS, which botocore reaches over HTTPS)."""
    return endpoint_url is None or endpoint_url.lower().startswith("https://")


#: Bodies up to this size go without `Expect: 100-continue` (see _small_without_expect).
SMALL_BODY = 1024 * 1024


def _small_without_expect(request: Any, **kwargs: Any) -> None:
    """Send small bodies (state records, hook events, small objects) at once, without the
    `Expect: 100-continue` botocore asks for every file-like body: aiohttp waits for the
    store's `100 Continue` before the body, and for a small PutObject it now and then waited
    forever on a reused connection (seen against `rclone serve s3`, stuck in aiohttp's
    write_bytes). Parts keep it: a part waits for the store to take it, instead of being
    copied into the socket's send buffer while the store is not reading yet, which is what
    keeps many uploads within UPLOAD_MEMORY_BUDGET. The header is not signed (SigV4 leaves
    `expect` out), so it can go here, before sending."""
    length = request.headers.get("Content-Length")
    if length is not None and int(length) <= SMALL_BODY:
        request.headers.pop("Expect", None)


@contextlib.asynccontextmanager
async def open_storage(settings: Settings) -> AsyncIterator[S3Client]:
    """Yield the process's S3Client; on exit, wait briefly for pending aborts, then close."""
    session = aioboto3.Session()
    async with session.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.s3_region,
        config=client_config(settings),
    ) as client:
        client.meta.events.register("before-send.s3", _small_without_expect)
        storage = S3Client(
            client,
            settings.s3_bucket,
            part_size=settings.part_size,
            multipart_threshold=settings.multipart_threshold,
            parts_in_flight=settings.parts_in_flight,
            budget=MemoryBudget(settings.memory_budget, on_change=metrics.BUFFERED_BYTES.set),
            provider=settings.provider,
        )
        metrics.BUDGET_BYTES.set(settings.memory_budget)
        try:
            yield storage
        finally:
            await storage.wait_for_cleanups(grace=30)
