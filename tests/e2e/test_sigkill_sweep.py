"""The process goes away (../shared/TESTING.md): a SIGKILL cannot abort anything, so the
multipart upload it was writing stays behind until `python -m app sweep --apply` (or the
bucket's lifecycle rule) aborts it. A real uvicorn process over `rclone serve s3`, which
reports real `Initiated` times.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from tests.e2e.processes import ROOT, AppProcess, get_json, post_generated
from tests.support import Bucket, MiB, parts_stored, stored_sha256, wait_until

PART = 5 * MiB


def sweep(bucket: Bucket, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m app sweep ARGS` for this bucket, as an operator would run it."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("S3_", "UPLOAD_"))}
    env = {**inherited, "S3_ENDPOINT_URL": bucket.endpoint, "S3_BUCKET": bucket.name}
    return subprocess.run(
        [sys.executable, "-m", "app", "sweep", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_sigkill_mid_upload_then_sweep(
    bucket: Bucket, start_app: Callable[..., AppProcess]
) -> None:
    app = start_app(bucket, part_size=PART)
    with ThreadPoolExecutor(max_workers=1) as pool:
        upload = pool.submit(post_generated, app.port, 200 * MiB, filename="killed.bin", timeout=60)
        stored = wait_until(lambda: parts_stored(bucket) > 0, timeout=30)
        assert app.proc is not None
        app.proc.kill()  # SIGKILL: no cleanup can run
        assert app.wait(timeout=10) is not None
        assert stored, f"no part stored before the kill\n{app.log()[-3000:]}"
        # The client sees its connection die (whatever the exact exception), never a 201.
        error = upload.exception(timeout=60)
    assert isinstance(error, OSError), error

    left = bucket.incomplete_uploads()
    assert len(left) == 1 and left[0]["Key"].startswith("uploads/")
    assert left[0]["Key"].endswith("/killed.bin")
    assert bucket.keys() == []  # nothing was completed

    dry = sweep(bucket, "--older-than", "0s")
    assert dry.returncode == 0, dry.stderr
    assert f"would abort {left[0]['Key']} upload_id={left[0]['UploadId']}" in dry.stdout
    assert "1 incomplete multipart upload(s)" in dry.stdout
    assert bucket.incomplete_uploads() == left  # a dry run aborts nothing

    applied = sweep(bucket, "--older-than", "0s", "--apply")
    assert applied.returncode == 0, applied.stderr
    assert f"aborting {left[0]['Key']}" in applied.stdout
    bucket.assert_clean()

    # A restarted instance over the same bucket serves uploads as before (alive).
    again = start_app(bucket, part_size=PART)
    assert get_json(again.port, "/healthz") == (200, {"status": "ok"})
    status, answer, sha = post_generated(again.port, 12 * MiB + 1, filename="after.bin")
    assert status == 201, answer
    stored_file = answer["files"][0]
    assert stored_file["size"] == 12 * MiB + 1 and stored_file["sha256"] == sha
    assert stored_sha256(bucket, stored_file["key"]) == sha
    assert bucket.incomplete_uploads() == []
    assert bucket.keys() == [stored_file["key"]]
