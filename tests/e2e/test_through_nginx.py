"""The service as deployed: real nginx from nginx/*.template in front of real uvicorn
processes, storing into `rclone serve s3`, driven by curl and raw HTTP clients.

Every test checks the stored bytes by SHA-256 and that no incomplete multipart upload is left.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from harness.clients import Curl, GeneratedUpload, get_json, post_generated
from harness.forms import write_generated
from harness.nginx import Nginx
from harness.processes import wait_until
from harness.servers import AppServer
from harness.store import Bucket, MiB
from harness.usage import ProcessUsage
from tests.e2e.conftest import RunCurl, StartApp, StartNginx

#: Test 1: the production part size, one part in flight, as tests/integration/test_memory.py.
LARGE = 1024 * MiB
LARGE_PART = 10 * MiB
PARTS_IN_FLIGHT = 1
#: Interpreter, allocator and socket buffers on top of the part buffers.
SLACK = 24 * MiB
#: Everything else: the smallest part S3 allows, so parts are stored early and often.
PART = 5 * MiB
#: --timeout-graceful-shutdown for the SIGTERM tests.
GRACE = 5


def upload_file(run_curl: RunCurl, nginx: Nginx, path: Path, sha: str, bucket: Bucket) -> None:
    """A plain `curl -F` through nginx that must be stored intact."""
    result = run_curl(f"{nginx.url}/uploads", path).wait(timeout=120)
    assert result.status == 201, result
    bucket.assert_stored(result.json()["files"][0], path.stat().st_size, sha)


@pytest.mark.slow
def test_one_gib_curl_upload_streams_through_nginx(
    bucket: Bucket, start_app: StartApp, start_nginx: StartNginx, run_curl: RunCurl, tmp_path: Path
) -> None:
    """`curl -F file=@1GiB` through nginx: nothing spooled by nginx, nothing written to disk
    by the app, bounded app memory, and parts stored while curl is still sending."""
    app = start_app(bucket, part_size=LARGE_PART, parts_in_flight=PARTS_IN_FLIGHT)
    nginx = start_nginx([app.address])
    assert nginx.body_temp.is_dir()
    assert nginx.body_temp_files() == []

    # Warm up the app (botocore's models, pooled connections, part buffers) through nginx.
    warm = tmp_path / "warm.bin"
    upload_file(run_curl, nginx, warm, write_generated(warm, 3 * LARGE_PART + 1), bucket)

    big = tmp_path / "big.bin"
    try:
        big_sha = write_generated(big, LARGE)
        usage = ProcessUsage(app.pid)

        started = time.monotonic()
        curl = run_curl(f"{nginx.url}/uploads", big, limit_rate="200M")
        spooled: set[str] = set()
        first_part_at: float | None = None
        deadline = started + 240
        while curl.running() and time.monotonic() < deadline:
            spooled.update(str(p) for p in nginx.body_temp_files())
            if first_part_at is None and bucket.parts_stored() > 0:
                first_part_at = time.monotonic() - started
            time.sleep(0.1 if first_part_at is None else 0.25)
        result = curl.wait(timeout=max(deadline - time.monotonic(), 1))
        seconds = time.monotonic() - started
        growth = usage.rss_growth()
        written = usage.disk_writes()
    finally:
        big.unlink(missing_ok=True)

    spooled.update(str(p) for p in nginx.body_temp_files())
    bound = (PARTS_IN_FLIGHT + 1) * LARGE_PART + SLACK
    print(
        f"\n1 GiB via curl -> nginx -> app: {seconds:.1f} s ({LARGE / MiB / seconds:.0f} MiB/s), "
        f"first part stored {first_part_at or 0:.2f} s after curl started; app peak RSS growth "
        f"{growth / MiB:.1f} MiB (bound {bound / MiB:.0f} MiB); app disk writes {written} bytes; "
        f"nginx client_body_temp files seen: {len(spooled)}"
    )

    assert result.returncode == 0 and result.status == 201, result
    stored = result.json()["files"][0]
    assert stored["strategy"] == "multipart"
    assert stored["parts"] == -(-LARGE // LARGE_PART)
    bucket.assert_stored(stored, LARGE, big_sha)
    assert first_part_at is not None, "no part was stored while curl was still sending"
    assert spooled == set(), "nginx spooled the body to client_body_temp"
    assert written < MiB
    assert growth <= bound


def test_client_gone_halfway_leaves_nothing(
    bucket: Bucket, start_app: StartApp, start_nginx: StartNginx, run_curl: RunCurl, tmp_path: Path
) -> None:
    """Half of a 200 MiB body (with Content-Length) over a raw socket to nginx, then close:
    the app aborts the multipart upload it started and keeps serving."""
    app = start_app(bucket, part_size=PART)
    nginx = start_nginx([app.address])
    size = 200 * MiB
    upload = GeneratedUpload(size, filename="gone.bin")
    chunks = upload.body.chunks()

    with socket.create_connection(("127.0.0.1", nginx.port), timeout=60) as sock:
        sock.sendall(upload.request_head(nginx.port) + next(chunks))  # and the part headers
        sent = 0
        for block in chunks:
            if sent >= size // 2:
                break
            sock.sendall(block)
            sent += len(block)
        # Proof that the abort has work to do: a multipart upload with stored parts.
        assert wait_until(lambda: bucket.parts_stored() > 0, timeout=20), app.log()[-3000:]
    # The socket is closed here, 100 MiB short of its Content-Length.

    gone = time.monotonic()
    assert wait_until(lambda: bucket.is_clean(), timeout=30, interval=0.25), (
        bucket.incomplete_uploads(),
        bucket.keys(),
        app.log()[-3000:],
    )
    cleaned = time.monotonic() - gone
    print(f"\nclient gone after {sent / MiB:.0f} MiB; storage clean {cleaned:.2f} s later")
    assert wait_until(lambda: "code=client_disconnected" in app.log(), timeout=10), app.log()

    assert get_json(nginx.port, "/healthz") == (200, {"status": "ok"})
    after = tmp_path / "after.bin"
    upload_file(run_curl, nginx, after, write_generated(after, 12 * MiB + 3), bucket)
    assert len(bucket.keys()) == 1


@pytest.mark.slow
def test_two_instances_share_concurrent_uploads(
    bucket: Bucket,
    start_app: StartApp,
    start_nginx: StartNginx,
) -> None:
    """8 concurrent 64 MiB uploads (distinct bytes) through one nginx upstream of two app
    instances: all intact, and both instances received request bodies."""
    count, size = 8, 64 * MiB
    apps = [start_app(bucket, part_size=PART) for _ in range(2)]
    nginx = start_nginx([app.address for app in apps])
    usages = [ProcessUsage(app.pid) for app in apps]

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=count) as pool:
        futures = [
            pool.submit(
                post_generated, nginx.port, size, seed=i + 1, filename=f"c{i}.bin", timeout=120
            )
            for i in range(count)
        ]
        results = [future.result(timeout=240) for future in futures]
    seconds = time.monotonic() - started
    rchar_growth = [usage.bytes_read() for usage in usages]

    upstreams = re.findall(r'"POST /uploads HTTP/1\.1" 201 .* upstream=(\S+)', nginx.access_log())
    per_instance = {app.address: upstreams.count(app.address) for app in apps}
    print(
        f"\n{count} x {size // MiB} MiB concurrently in {seconds:.1f} s; uploads per instance "
        f"(nginx access log) {per_instance}; app rchar growth "
        f"{[f'{g / MiB:.0f} MiB' for g in rchar_growth]}"
    )

    for status, body, _ in results:
        assert status == 201, body
    assert len({sha for _, _, sha in results}) == count  # the bodies really differ
    keys = [body["files"][0]["key"] for _, body, _ in results]
    assert sorted(keys) == sorted(bucket.keys())
    for _, body, sha in results:
        bucket.assert_stored(body["files"][0], size, sha)
    assert len(upstreams) == count
    # Each instance read at least one whole body from its sockets.
    assert all(growth >= size for growth in rchar_growth), rchar_growth
    assert all(n > 0 for n in per_instance.values()), per_instance


def sigterm_during_upload(
    bucket: Bucket,
    start_app: StartApp,
    start_nginx: StartNginx,
    run_curl: RunCurl,
    path: Path,
    limit_rate: str,
) -> tuple[AppServer, Curl, float]:
    """Start `curl --limit-rate` through nginx to one app, SIGTERM the app once a part is
    stored (curl still sending); the app, the curl and when the signal was sent."""
    app = start_app(
        bucket,
        part_size=PART,
        graceful_shutdown=GRACE,
        env={"UPLOAD_MULTIPART_THRESHOLD": str(PART)},
    )
    nginx = start_nginx([app.address])
    curl = run_curl(f"{nginx.url}/uploads", path, limit_rate=limit_rate)
    if not wait_until(lambda: bucket.parts_stored() > 0, timeout=30):
        pytest.fail(f"no part stored within 30 s\n{app.log()}")
    if not curl.running():
        pytest.fail(f"curl finished before the signal: {curl.wait()}")
    app.send_signal(signal.SIGTERM)
    return app, curl, time.monotonic()


def log_lines(app: AppServer, *needles: str) -> list[str]:
    return [line for line in app.log().splitlines() if any(n in line for n in needles)]


@pytest.mark.slow
def test_sigterm_aborts_upload_that_cannot_finish_in_grace(
    bucket: Bucket, start_app: StartApp, start_nginx: StartNginx, run_curl: RunCurl, tmp_path: Path
) -> None:
    """Through nginx, one app instance with --timeout-graceful-shutdown 5: a 64 MiB upload
    at 4 MB/s (16 s) is still running when the grace time ends. The app must abort its
    multipart upload before it exits; nothing may remain in storage."""
    path = tmp_path / "slow.bin"
    write_generated(path, 64 * MiB)
    app, curl, signalled = sigterm_during_upload(
        bucket, start_app, start_nginx, run_curl, path, limit_rate="4M"
    )
    exit_code = app.wait(timeout=GRACE + 40)
    exited_after = time.monotonic() - signalled
    result = curl.wait(timeout=60)
    print(
        f"\nslow upload: app exited {exit_code} {exited_after:.1f} s after SIGTERM; "
        f"client saw status {result.status} (curl exit {result.returncode}); app log:\n  "
        + "\n  ".join(log_lines(app, "Cancel", "abort", "upload", "Traceback", "Error"))
    )
    assert exit_code is not None, "the app did not exit after SIGTERM"
    assert result.status != 201, result
    assert wait_until(lambda: bucket.is_clean(), timeout=30, interval=0.25), (
        bucket.incomplete_uploads(),
        bucket.keys(),
        app.log(),
    )


@pytest.mark.slow
def test_sigterm_lets_upload_finish_within_grace(
    bucket: Bucket, start_app: StartApp, start_nginx: StartNginx, run_curl: RunCurl, tmp_path: Path
) -> None:
    """Through nginx, one app instance with --timeout-graceful-shutdown 5: a 24 MiB upload
    at 16 MB/s (1.5 s) that is under way at SIGTERM completes intact (201), then the app
    exits."""
    path = tmp_path / "fast.bin"
    sha = write_generated(path, 24 * MiB)
    app, curl, signalled = sigterm_during_upload(
        bucket, start_app, start_nginx, run_curl, path, limit_rate="16M"
    )
    result = curl.wait(timeout=60)
    answered_after = time.monotonic() - signalled
    exit_code = app.wait(timeout=GRACE + 40)
    print(
        f"\nfast upload: answered {result.status} {answered_after:.1f} s after SIGTERM; "
        f"app exited {exit_code}"
    )
    assert result.status == 201, (result, app.log())
    stored = result.json()["files"][0]
    assert stored["strategy"] == "multipart"
    bucket.assert_stored(stored, 24 * MiB, sha)
    assert exit_code is not None, "the app did not exit after SIGTERM"
    assert log_lines(app, "Cancel") == []


@pytest.mark.slow
def test_a_chunked_multi_gib_upload_grows_its_parts(
    bucket: Bucket, start_app: StartApp, start_nginx: StartNginx, run_curl: RunCurl, tmp_path: Path
) -> None:
    """`curl -F file=@FIFO` of 2 GiB written as it goes (chunked, no Content-Length) through
    nginx, with at most 100 parts of 5 MiB: 410 equal parts would be refused; the growing
    parts (10 each of 5, 10, 20, 40, 80 MiB, then 160 MiB) store it in 54."""
    size = 2048 * MiB
    app = start_app(bucket, part_size=PART, env={"S3_MAX_PARTS": "100"})
    nginx = start_nginx([app.address])
    fifo = tmp_path / "stream"
    os.mkfifo(fifo)
    curl = run_curl(f"{nginx.url}/uploads", fifo)
    with ThreadPoolExecutor(max_workers=1) as pool:
        digest = pool.submit(write_generated, fifo, size).result(timeout=240)
    result = curl.wait(timeout=240)
    assert result.status == 201, result
    stored = result.json()["files"][0]
    assert (stored["strategy"], stored["parts"]) == ("multipart", 54)
    bucket.assert_stored(stored, size, digest)
