"""The seed design (PD-013) as a baseline: spool the whole form, then upload it part by part.

`await request.form()` has Starlette (python-multipart) parse the entire body first, rolling
each file over from memory to a SpooledTemporaryFile on disk past 1 MiB; only then are the
file's bytes read back in 10 MiB parts and sent one after another with aioboto3. Reads
S3_ENDPOINT_URL and S3_BUCKET; run it with `uvicorn bench.seed_app:app`.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aioboto3
from aiobotocore.config import AioConfig
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

PART_SIZE = 10 * 1024 * 1024


async def upload_stream(s3: Any, bucket: str, key: str, file: UploadFile) -> int:
    """PD-013's S3Client.upload_stream: sequential 10 MiB parts, abort on any failure."""
    created = await s3.create_multipart_upload(
        Bucket=bucket, Key=key, ContentType=file.content_type or "application/octet-stream"
    )
    upload_id = created["UploadId"]
    parts: list[dict[str, Any]] = []
    total = 0
    try:
        while chunk := await file.read(PART_SIZE):
            number = len(parts) + 1
            answer = await s3.upload_part(
                Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=chunk
            )
            parts.append({"ETag": answer["ETag"], "PartNumber": number})
            total += len(chunk)
        await s3.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
    except BaseException:
        await s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        raise
    return total


async def upload(request: Request) -> JSONResponse:
    s3 = request.app.state.s3
    bucket = request.app.state.bucket
    files = []
    async with request.form() as form:
        for field, value in form.multi_items():
            if isinstance(value, UploadFile) and value.filename:
                key = f"seed/{uuid.uuid4()}/{os.path.basename(value.filename)}"
                size = await upload_stream(s3, bucket, key, value)
                files.append({"field": field, "key": key, "size": size})
    return JSONResponse({"files": files}, status_code=201)


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    session = aioboto3.Session()
    # The service's checksum mode, so that neither pays for CRC32s the other skips.
    config = AioConfig(
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        s3={"payload_signing_enabled": False},  # as the service runs in the bench
    )
    async with session.client(
        "s3",
        endpoint_url=os.environ.get("S3_ENDPOINT_URL"),
        region_name="us-east-1",
        config=config,
    ) as s3:
        app.state.s3 = s3
        app.state.bucket = os.environ["S3_BUCKET"]
        yield


async def auth(request: Request) -> Response:
    # nginx's auth_request in the shared template asks this before every upload.
    return Response(status_code=204)


app = Starlette(
    routes=[
        Route("/uploads", upload, methods=["POST"]),
        Route("/auth", auth, methods=["GET"]),
    ],
    lifespan=lifespan,
)
