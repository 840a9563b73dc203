"""The benchmark's own view of the loopback store: buckets, stored digests, clean-up."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from bench.processes import ACCESS_KEY, SECRET_KEY

MiB = 1024 * 1024


def s3_client(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        # The service's default (S3_CHECKSUM_MODE): botocore >= 1.36 would otherwise add a
        # CRC32 to every part of the direct upload that the other contenders do not compute.
        # Unsigned payloads, as the service runs in the bench (S3_PAYLOAD_SIGNING=off).
        config=Config(
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            max_pool_connections=16,
            s3={"payload_signing_enabled": False},
        ),
    )


class Bucket:
    """A fresh bucket for one contender, emptied after every upload so disk use stays flat."""

    def __init__(self, endpoint: str, label: str) -> None:
        self.endpoint = endpoint
        self.name = f"{label}-{uuid.uuid4().hex[:12]}"
        self.s3 = s3_client(endpoint)
        self.s3.create_bucket(Bucket=self.name)

    def sha256(self, key: str) -> str:
        """The stored object's digest, streamed back in 1 MiB pieces."""
        digest = hashlib.sha256()
        body = self.s3.get_object(Bucket=self.name, Key=key)["Body"]
        try:
            for block in iter(lambda: body.read(MiB), b""):
                digest.update(block)
        finally:
            body.close()
        return digest.hexdigest()

    def purge(self) -> None:
        """Delete every object and abort every incomplete multipart upload."""
        try:
            uploads = self.s3.list_multipart_uploads(Bucket=self.name).get("Uploads", [])
        except ClientError as exc:
            # rclone answers NoSuchUpload, not an empty list, where none was ever created.
            if exc.response.get("Error", {}).get("Code") != "NoSuchUpload":
                raise
            uploads = []
        for upload in uploads:
            self.s3.abort_multipart_upload(
                Bucket=self.name, Key=upload["Key"], UploadId=upload["UploadId"]
            )
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.name)
        for page in pages:
            for obj in page.get("Contents", []):
                self.s3.delete_object(Bucket=self.name, Key=obj["Key"])

    def delete(self) -> None:
        self.purge()
        self.s3.delete_bucket(Bucket=self.name)
