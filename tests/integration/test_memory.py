"""A large body through a real uvicorn process: bounded memory, no disk writes, streaming.

The app runs as its own process (as in production) against `rclone serve s3`, and we read
its peak RSS and disk writes from /proc. Set MEMORY_TEST_SIZE (e.g. `10GiB`) to try larger
bodies; CI runs the default 1 GiB.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.units import MiB, parse_size
from tests.support import (
    BOUNDARY,
    Bucket,
    FilePart,
    ProcessUsage,
    RcloneS3,
    content_type,
    free_port,
    iter_generated,
    part_head,
    parts_stored,
    stored_sha256,
    wait_for_port,
    wait_until,
)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SIZE = parse_size(os.environ.get("MEMORY_TEST_SIZE", "1GiB"))
PART_SIZE = 10 * MiB
PARTS_IN_FLIGHT = 1
#: Interpreter, allocator and socket buffers on top of the part buffers; measured ~1.5 MiB
#: at 1 GiB and at 4 GiB alike (21.5 MiB growth with two 10 MiB parts).
SLACK = 12 * MiB


@pytest.fixture(scope="module")
def app_process(rclone: RcloneS3) -> Iterator[tuple[subprocess.Popen[bytes], int, Bucket]]:
    bucket = Bucket(rclone.endpoint)
    port = free_port()
    env = {
        **os.environ,
        "S3_ENDPOINT_URL": rclone.endpoint,
        "S3_BUCKET": bucket.name,
        "UPLOAD_PART_SIZE": str(PART_SIZE),
        "UPLOAD_PARTS_IN_FLIGHT": str(PARTS_IN_FLIGHT),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "app.main:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )
    try:
        wait_for_port(port, proc=proc)
        yield proc, port, bucket
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def upload(port: int, size: int, on_progress: Any = None) -> tuple[int, dict[str, Any], str]:
    """POST a generated file of `size` bytes with Content-Length, streaming it from memory."""
    head = part_head(FilePart("file", "big.bin", b""))
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    digest = hashlib.sha256()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    conn.putrequest("POST", "/uploads")
    conn.putheader("Content-Type", content_type())
    conn.putheader("Content-Length", str(len(head) + size + len(tail)))
    conn.endheaders()
    conn.send(head)
    sent = 0
    for block in iter_generated(size):
        digest.update(block)
        conn.send(block)
        sent += len(block)
        if on_progress is not None:
            on_progress(sent)
    conn.send(tail)
    response = conn.getresponse()
    body = json.loads(response.read())
    conn.close()
    return response.status, body, digest.hexdigest()


def test_large_upload_memory_disk_and_streaming(
    app_process: tuple[subprocess.Popen[bytes], int, Bucket],
) -> None:
    proc, port, bucket = app_process
    # Warm up: load botocore's models, open pooled connections, allocate part buffers once.
    status, _, _ = upload(port, 3 * PART_SIZE + 1)
    assert status == 201

    usage = ProcessUsage(proc.pid)
    cpu_before = cpu_seconds(proc.pid)
    saw_parts_while_sending = False

    def check_streaming(sent: int) -> None:
        # Halfway through the body, parts must already be in storage: the app uploads
        # while the client is still sending, it does not wait for the end of the body.
        nonlocal saw_parts_while_sending
        if saw_parts_while_sending or sent < min(SIZE // 2, 200 * MiB):
            return
        saw_parts_while_sending = wait_until(lambda: parts_stored(bucket) > 0, timeout=20)

    started = time.monotonic()
    status, body, sent_sha = upload(port, SIZE, check_streaming)
    seconds = time.monotonic() - started
    growth = usage.rss_growth()
    written = usage.disk_writes()
    cpu_after = cpu_seconds(proc.pid)
    user, system = cpu_after[0] - cpu_before[0], cpu_after[1] - cpu_before[1]

    assert status == 201, body
    stored = body["files"][0]
    assert stored["size"] == SIZE and stored["sha256"] == sent_sha
    assert stored_sha256(bucket, stored["key"]) == sent_sha
    assert stored["strategy"] == "multipart" and stored["parts"] == -(-SIZE // PART_SIZE)
    assert bucket.incomplete_uploads() == []
    assert saw_parts_while_sending

    bound = (PARTS_IN_FLIGHT + 1) * PART_SIZE + SLACK
    print(
        f"\n{SIZE / MiB:.0f} MiB in {seconds:.1f} s ({SIZE / MiB / seconds:.0f} MiB/s); "
        f"peak RSS growth {growth / MiB:.1f} MiB (bound {bound / MiB:.0f} MiB); "
        f"disk writes {written} bytes; app CPU {user:.1f} s user + {system:.1f} s system"
    )
    assert growth <= bound
    assert written < MiB


def test_single_put_holds_the_file_once(
    app_process: tuple[subprocess.Popen[bytes], int, Bucket],
) -> None:
    """A body under the threshold goes as one PutObject: held whole, but not copied again."""
    proc, port, bucket = app_process
    size = 45 * MiB
    assert upload(port, size)[0] == 201  # warm-up at the same size
    usage = ProcessUsage(proc.pid)
    status, body, sent_sha = upload(port, size)
    growth = usage.rss_growth()
    assert status == 201, body
    stored = body["files"][0]
    assert (stored["strategy"], stored["sha256"]) == ("single", sent_sha)
    assert stored_sha256(bucket, stored["key"]) == sent_sha
    print(f"\nsingle put of {size / MiB:.0f} MiB: peak RSS growth {growth / MiB:.1f} MiB")
    # BytesIO over-allocates by 1/8 as it grows; a second copy would be another 45 MiB.
    assert growth <= size * 9 // 8 + SLACK
