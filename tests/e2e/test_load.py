"""Load (../shared/TESTING.md): fast and slow clients together, more uploads than the memory
budget holds at once, and /healthz answering meanwhile. A real uvicorn process over
`rclone serve s3`; every object checked by SHA-256.

/healthz is timed against a generous liveness bound (1 s on a loopback where it takes about a
millisecond idle): it catches an event loop blocked by a parser or a synchronous call, not a
slow machine.
"""

from __future__ import annotations

import http.client
import json
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

from harness.clients import get_metric, post_generated
from harness.processes import wait_until
from harness.store import Bucket, MiB
from harness.usage import ProcessUsage
from tests.e2e.conftest import StartApp

PART = 5 * MiB
#: Liveness bound for one GET /healthz while uploads run.
HEALTHZ_BOUND = 1.0
PROBES = 20


def healthz_seconds(port: int) -> float:
    """One GET /healthz on a new connection: its latency; fails unless 200 ok."""
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        assert (response.status, json.loads(response.read())) == (200, {"status": "ok"})
    finally:
        conn.close()
    return time.monotonic() - started


def probe_while(port: int, uploads: list[Future[Any]]) -> list[tuple[float, bool]]:
    """PROBES /healthz calls 0.1 s apart: (latency, were uploads still running)."""
    probes = []
    for _ in range(PROBES):
        running = not all(f.done() for f in uploads)
        probes.append((healthz_seconds(port), running))
        time.sleep(0.1)
    return probes


def assert_all_intact(bucket: Bucket, results: list[tuple[int, dict[str, Any], str]]) -> None:
    for status, answer, sha in results:
        assert status == 201, answer
        stored = answer["files"][0]
        assert stored["sha256"] == sha
        assert bucket.sha256(stored["key"]) == sha
    assert len({sha for _, _, sha in results}) == len(results)  # the bodies really differ
    assert bucket.incomplete_uploads() == []


@pytest.mark.slow
def test_healthz_stays_fast_under_eight_concurrent_uploads(
    bucket: Bucket, start_app: StartApp
) -> None:
    count, size = 8, 64 * MiB
    app = start_app(bucket, part_size=PART)
    idle = healthz_seconds(app.port)
    with ThreadPoolExecutor(max_workers=count) as pool:
        uploads = [
            pool.submit(post_generated, app.port, size, seed=i + 1, filename=f"h{i}.bin")
            for i in range(count)
        ]
        assert wait_until(lambda: bucket.parts_stored() > 0, timeout=30), app.log()[-3000:]
        probes = probe_while(app.port, uploads)
        results = [f.result(timeout=180) for f in uploads]

    latencies = [seconds for seconds, _ in probes]
    print(
        f"\n/healthz under {count} x {size // MiB} MiB uploads: idle {idle * 1000:.1f} ms, "
        f"max {max(latencies) * 1000:.1f} ms, "
        f"median {sorted(latencies)[len(latencies) // 2] * 1000:.1f} ms; "
        f"{sum(r for _, r in probes)} of {PROBES} probes while uploads ran"
    )
    assert max(latencies) < HEALTHZ_BOUND, latencies
    assert sum(running for _, running in probes) >= PROBES // 2, "the uploads ended too soon"
    assert_all_intact(bucket, results)
    assert len(bucket.keys()) == count


@pytest.mark.slow
def test_fast_and_slow_clients_beyond_the_memory_budget(
    bucket: Bucket, start_app: StartApp
) -> None:
    """UPLOAD_MEMORY_BUDGET 30 MiB holds six 5 MiB parts; 8 fast and 4 slow (about 4 MB/s)
    clients upload at once. The slow ones hold their memory for seconds; the rest wait for
    what is left. None fails, none deadlocks, everything is intact, memory stays bounded."""
    budget, fast, slow = 30 * MiB, 8, 4
    app = start_app(
        bucket,
        part_size=PART,
        env={"UPLOAD_MEMORY_BUDGET": str(budget), "UPLOAD_MULTIPART_THRESHOLD": str(PART)},
    )
    status, _, _ = post_generated(app.port, MiB, filename="warm.bin")  # warm up, then measure
    assert status == 201
    usage = ProcessUsage(app.pid)

    with ThreadPoolExecutor(max_workers=fast + slow) as pool:
        uploads = [
            pool.submit(
                post_generated,
                app.port,
                16 * MiB,
                seed=100 + i,
                filename=f"s{i}.bin",
                rate=4_000_000,
            )
            for i in range(slow)
        ]
        uploads += [
            pool.submit(post_generated, app.port, 32 * MiB, seed=i + 1, filename=f"f{i}.bin")
            for i in range(fast)
        ]
        probes = probe_while(app.port, uploads)
        results = [f.result(timeout=180) for f in uploads]

    growth = usage.rss_growth()
    waits = get_metric(app.port, "upload_memory_waits_total")
    print(
        f"\n{fast} fast x 32 MiB + {slow} slow x 16 MiB, budget {budget // MiB} MiB: "
        f"peak RSS growth {growth / MiB:.1f} MiB, memory waits {waits:.0f}, "
        f"/healthz max {max(s for s, _ in probes) * 1000:.1f} ms"
    )
    assert_all_intact(bucket, results)
    assert len(bucket.keys()) == fast + slow + 1
    assert waits > 0  # the budget really was the limit
    assert get_metric(app.port, "upload_buffered_bytes") == 0  # and all of it given back
    # tests/e2e/test_memory_budget.py's constant: clients' pools, buffers, allocator slack.
    assert growth <= budget + 24 * MiB, f"peak RSS grew {growth / MiB:.1f} MiB"
    assert max(seconds for seconds, _ in probes) < HEALTHZ_BOUND, probes
