"""A large body through a real uvicorn process: bounded memory, no disk writes, streaming.

The app runs as its own process (as in production) against `rclone serve s3`, and we read
its peak RSS and disk writes from /proc. Set MEMORY_TEST_SIZE (e.g. `10GiB`) to try larger
bodies; CI runs the default 1 GiB.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from app.units import MiB, parse_size
from harness.clients import post_generated
from harness.processes import wait_until
from harness.servers import AppServer
from harness.store import Bucket, RcloneStore
from harness.usage import ProcessUsage

pytestmark = pytest.mark.slow

SIZE = parse_size(os.environ.get("MEMORY_TEST_SIZE", "1GiB"))
PART_SIZE = 10 * MiB
PARTS_IN_FLIGHT = 1
#: Interpreter, allocator and socket buffers on top of the part buffers; measured ~1.5 MiB
#: at 1 GiB and at 4 GiB alike (21.5 MiB growth with two 10 MiB parts).
SLACK = 12 * MiB


@pytest.fixture(scope="module")
def app_process(
    rclone: RcloneStore, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[AppServer, Bucket]]:
    bucket = Bucket(rclone.endpoint)
    settings = {
        **bucket.environment(),
        "UPLOAD_PART_SIZE": str(PART_SIZE),
        "UPLOAD_PARTS_IN_FLIGHT": str(PARTS_IN_FLIGHT),
    }
    log = tmp_path_factory.mktemp("app") / "app.log"
    app = AppServer("app", log, settings, "--no-access-log", "--log-level", "warning")
    app.start()
    try:
        yield app, bucket
    finally:
        app.stop()


def upload(port: int, size: int, **options: Any) -> tuple[int, dict[str, Any], str]:
    """POST a generated file of `size` bytes with Content-Length, streaming it from memory."""
    return post_generated(port, size, timeout=600, **options)


def test_large_upload_memory_disk_and_streaming(
    app_process: tuple[AppServer, Bucket],
) -> None:
    app, bucket = app_process
    # Warm up: load botocore's models, open pooled connections, allocate part buffers once.
    status, _, _ = upload(app.port, 3 * PART_SIZE + 1)
    assert status == 201

    usage = ProcessUsage(app.pid)
    saw_parts_while_sending = False

    def check_streaming(sent: int) -> None:
        # Halfway through the body, parts must already be in storage: the app uploads
        # while the client is still sending, it does not wait for the end of the body.
        nonlocal saw_parts_while_sending
        if saw_parts_while_sending or sent < min(SIZE // 2, 200 * MiB):
            return
        saw_parts_while_sending = wait_until(lambda: bucket.parts_stored() > 0, timeout=20)

    started = time.monotonic()
    status, body, sent_sha = upload(app.port, SIZE, on_progress=check_streaming)
    seconds = time.monotonic() - started
    growth = usage.rss_growth()
    written = usage.disk_writes()
    cpu = usage.cpu_seconds()

    assert status == 201, body
    stored = body["files"][0]
    bucket.assert_stored(stored, SIZE, sent_sha)
    assert stored["strategy"] == "multipart" and stored["parts"] == -(-SIZE // PART_SIZE)
    assert saw_parts_while_sending

    bound = (PARTS_IN_FLIGHT + 1) * PART_SIZE + SLACK
    print(
        f"\n{SIZE / MiB:.0f} MiB in {seconds:.1f} s ({SIZE / MiB / seconds:.0f} MiB/s); "
        f"peak RSS growth {growth / MiB:.1f} MiB (bound {bound / MiB:.0f} MiB); "
        f"disk writes {written} bytes; app CPU {cpu:.1f} s"
    )
    assert growth <= bound
    assert written < MiB


def test_single_put_holds_the_file_once(
    app_process: tuple[AppServer, Bucket],
) -> None:
    """A body under the threshold goes as one PutObject: held whole, but not copied again."""
    app, bucket = app_process
    size = 45 * MiB
    assert upload(app.port, size)[0] == 201  # warm-up at the same size
    usage = ProcessUsage(app.pid)
    status, body, sent_sha = upload(app.port, size)
    growth = usage.rss_growth()
    assert status == 201, body
    stored = body["files"][0]
    assert (stored["strategy"], stored["sha256"]) == ("single", sent_sha)
    assert bucket.sha256(stored["key"]) == sent_sha
    print(f"\nsingle put of {size / MiB:.0f} MiB: peak RSS growth {growth / MiB:.1f} MiB")
    # BytesIO over-allocates by 1/8 as it grows; a second copy would be another 45 MiB.
    assert growth <= size * 9 // 8 + SLACK
