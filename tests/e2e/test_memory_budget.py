"""UPLOAD_MEMORY_BUDGET in a real uvicorn process: 16 concurrent uploads stay within it.

Without the budget these uploads would buffer about 16 x 2 parts (a part filling and a part
being stored each); with it the process's peak RSS growth stays within the budget plus a
small constant, every upload completes and every object is intact.
"""

from __future__ import annotations

import concurrent.futures

import pytest

from harness.clients import get_metric, post_generated
from harness.store import Bucket
from harness.usage import ProcessUsage
from tests.e2e.conftest import StartApp

MiB = 1024 * 1024
PART = 5 * MiB
BUDGET = 40 * MiB
#: Beyond part buffers: the HTTP clients' pools, per-connection buffers, allocator slack.
#: Measured growth without uploads' buffers is about 2 MiB (docs/scaling.md).
CONSTANT = 24 * MiB
UPLOADS = 16
SIZE = 48 * MiB


@pytest.mark.slow
def test_sixteen_uploads_stay_within_the_memory_budget(bucket: Bucket, start_app: StartApp) -> None:
    app = start_app(
        bucket,
        part_size=PART,
        env={
            "UPLOAD_MEMORY_BUDGET": str(BUDGET),
            # Large files must be multipart: below the threshold they would be single puts.
            "UPLOAD_MULTIPART_THRESHOLD": str(16 * MiB),
        },
    )
    # Warm up the S3 client's connections and code paths before taking the baseline.
    status, _, _ = post_generated(app.port, 1 * MiB, filename="warm.bin")
    assert status == 201
    usage = ProcessUsage(app.pid)

    with concurrent.futures.ThreadPoolExecutor(UPLOADS) as pool:
        results = list(
            pool.map(
                lambda n: post_generated(app.port, SIZE, seed=n + 1, filename=f"f{n}.bin"),
                range(UPLOADS),
            )
        )

    growth = usage.rss_growth()
    print(
        f"\n16 x {SIZE // MiB} MiB, budget {BUDGET // MiB} MiB: peak RSS growth "
        f"{growth / MiB:.1f} MiB"
    )
    for status, answer, digest in results:
        assert status == 201, answer
        stored = answer["files"][0]
        assert stored["size"] == SIZE and stored["sha256"] == digest
        assert stored["strategy"] == "multipart"
    assert bucket.incomplete_uploads() == []
    assert len(bucket.keys()) == UPLOADS + 1
    # The budget was the limit (uploads waited for it) and was never exceeded in the app...
    assert get_metric(app.port, "upload_memory_waits_total") > 0
    assert get_metric(app.port, "upload_buffered_bytes") == 0
    # ...and the process's memory shows it: within the budget plus a small constant.
    assert growth <= BUDGET + CONSTANT, f"peak RSS grew {growth / MiB:.1f} MiB"
