"""What every tier shares: loopback credentials only, and `rclone serve s3`."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from harness.store import RcloneStore, aws_environment

os.environ.update(aws_environment())


@pytest.fixture(scope="session")
def rclone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RcloneStore]:
    """`rclone serve s3` over a temporary directory: a fast, disk-backed S3 with real
    timestamps, which a test can stop and start again."""
    directory = tmp_path_factory.mktemp("rclone")
    server = RcloneStore(directory / "s3", directory / "rclone.log").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """`pytest.mark.anyio` tests run on asyncio, as the service does."""
    return "asyncio"
