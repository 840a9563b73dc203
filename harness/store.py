"""The loopback S3 store: `rclone serve s3` as a process, credentials, and buckets with the checks
every upload test makes and the clean-up every benchmark upload needs."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from typing import Any, Self

import boto3
from botocore.exceptions import ClientError

from app.ops.localstore import serve_s3_command
from harness.processes import Process, free_port

ACCESS_KEY = "test-access-key"
SECRET_KEY = "test-secret-key"
MiB = 1024 * 1024


def aws_environment() -> dict[str, str]:
    """Credentials for the loopback servers; no AWS configuration of the machine leaks in."""
    return {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def s3_client(endpoint: str, config: Any = None) -> Any:
    """A boto3 S3 client for a loopback server; `config` a botocore Config, if any."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=config,
    )


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class RcloneStore(Process):
    """`rclone serve s3` over `root`: each top-level folder is a bucket, each object a file.

    Stopped and started again, it serves the same directory on the same port.
    """

    def __init__(self, root: Path, log_path: Path) -> None:
        port = free_port()
        command = serve_s3_command(root, port, ACCESS_KEY, SECRET_KEY)
        super().__init__("rclone serve s3", command, port, log_path)
        self.root = root

    @property
    def endpoint(self) -> str:
        return self.url

    def start(self) -> Self:
        self.root.mkdir(parents=True, exist_ok=True)
        return super().start()


class Bucket:
    """A fresh bucket on a loopback S3 API server, named `label-<random>`."""

    def __init__(self, endpoint: str, label: str = "t") -> None:
        self.endpoint = endpoint
        self.name = f"{label}-{uuid.uuid4().hex[:20]}"
        self.s3 = s3_client(endpoint)
        self.s3.create_bucket(Bucket=self.name)

    def environment(self) -> dict[str, str]:
        """The settings that point the service at this bucket."""
        return {"S3_ENDPOINT_URL": self.endpoint, "S3_BUCKET": self.name}

    def read(self, key: str) -> bytes:
        return bytes(self.s3.get_object(Bucket=self.name, Key=key)["Body"].read())

    def sha256(self, key: str) -> str:
        """SHA-256 of an object, read back in 1 MiB pieces (objects may be gigabytes)."""
        digest = hashlib.sha256()
        stream = self.s3.get_object(Bucket=self.name, Key=key)["Body"]
        try:
            for block in iter(lambda: stream.read(MiB), b""):
                digest.update(block)
        finally:
            stream.close()
        return digest.hexdigest()

    def head(self, key: str) -> dict[str, Any]:
        return dict(self.s3.head_object(Bucket=self.name, Key=key))

    def keys(self) -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.name)
        return [obj["Key"] for page in pages for obj in page.get("Contents", [])]

    def incomplete_uploads(self) -> list[dict[str, Any]]:
        try:
            listing = self.s3.list_multipart_uploads(Bucket=self.name)
        except ClientError as exc:
            # `rclone serve s3` answers 404 NoSuchUpload, not an empty list, in a bucket
            # where no multipart upload was ever created.
            if exc.response.get("Error", {}).get("Code") == "NoSuchUpload":
                return []
            raise
        return list(listing.get("Uploads", []))

    def parts_stored(self) -> int:
        """Parts already stored across the bucket's incomplete multipart uploads."""
        count = 0
        for upload in self.incomplete_uploads():
            listing = self.s3.list_parts(
                Bucket=self.name, Key=upload["Key"], UploadId=upload["UploadId"]
            )
            count += len(listing.get("Parts", []))
        return count

    def is_clean(self) -> bool:
        """Nothing stored and nothing half-written: what a failed request must leave."""
        return self.incomplete_uploads() == [] and self.keys() == []

    def assert_clean(self) -> None:
        assert self.incomplete_uploads() == []
        assert self.keys() == []

    def assert_intact(self, stored: dict[str, Any], data: bytes) -> None:
        """The object under the answered key holds exactly the bytes that were sent."""
        self.assert_stored(stored, len(data), sha256(data))

    def assert_stored(self, stored: dict[str, Any], size: int, digest: str) -> None:
        """The answer names `size` bytes of SHA-256 `digest`, storage holds exactly those
        bytes under the answered key, and no multipart upload is left incomplete."""
        assert stored["size"] == size
        assert stored["sha256"] == digest
        assert self.sha256(stored["key"]) == digest
        assert self.incomplete_uploads() == []

    def purge(self) -> None:
        """Free the store's disk: abort every incomplete upload, delete every object."""
        for upload in self.incomplete_uploads():
            self.s3.abort_multipart_upload(
                Bucket=self.name, Key=upload["Key"], UploadId=upload["UploadId"]
            )
        for key in self.keys():
            self.s3.delete_object(Bucket=self.name, Key=key)
