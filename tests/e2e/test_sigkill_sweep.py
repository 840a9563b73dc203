"""The process goes away (../shared/TESTING.md): a SIGKILL cannot abort anything, so the
multipart upload it was writing stays behind until `python -m app sweep --apply` (or the
bucket's lifecycle rule) aborts it. A real uvicorn process over `rclone serve s3`, which
reports real `Initiated` times.
"""

from __future__ import annotations

import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor

from harness.clients import get_json, post_generated
from harness.processes import wait_until
from harness.servers import run_app_command
from harness.store import Bucket, MiB
from tests.e2e.conftest import StartApp

PART = 5 * MiB


def sweep(bucket: Bucket, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m app sweep ARGS` for this bucket, as an operator would run it."""
    return run_app_command("sweep", *args, env=bucket.environment(), timeout=60)


def test_sigkill_mid_upload_then_sweep(bucket: Bucket, start_app: StartApp) -> None:
    app = start_app(bucket, part_size=PART)
    with ThreadPoolExecutor(max_workers=1) as pool:
        upload = pool.submit(post_generated, app.port, 200 * MiB, filename="killed.bin", timeout=60)
        stored = wait_until(lambda: bucket.parts_stored() > 0, timeout=30)
        app.send_signal(signal.SIGKILL)  # no cleanup can run
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
    bucket.assert_stored(stored_file, 12 * MiB + 1, sha)
    assert bucket.keys() == [stored_file["key"]]
