"""`python -m app upload --resumable` as a process against a real uvicorn app storing into
`rclone serve s3`: the file goes in checksummed chunks and is stored intact, and a run killed
mid-upload is continued by the next run, which sends only what the service does not hold.

To kill the client mid-upload for certain, without timing, storage is made to wait: a proxy in
front of `rclone serve s3` (harness/faulty_s3.py) holds the third UploadPart until the test
releases it, so the service stops reading the PATCH in flight and the client stays blocked in
it until it is killed.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.clients import get_metric
from harness.faulty_s3 import Fault, FaultyS3
from harness.forms import write_generated
from harness.processes import ROOT, wait_until
from harness.servers import AppServer, run_app_command, service_environment
from harness.store import Bucket, MiB, RcloneStore
from tests.e2e.conftest import StartApp

PART = 5 * MiB
TOKEN = "resumable-cli-token-0123456789"
#: The upload CLI honours proxy settings; the app is on loopback.
NO_PROXY = {"NO_PROXY": "127.0.0.1,localhost"}


def upload_command(path: Path, app: AppServer, state_dir: Path, *options: str) -> list[str]:
    """`upload --resumable` of `path` in 8 MiB chunks, with its state under `state_dir`."""
    return [
        "upload",
        "--resumable",
        str(path),
        "--url",
        app.url,
        "--chunk-size",
        "8MiB",
        "--state-dir",
        str(state_dir),
        *options,
    ]


def stored_object(bucket: Bucket) -> str:
    """The one object a finished resumable upload leaves beside its bookkeeping."""
    every_key = bucket.keys()
    keys = [key for key in every_key if not key.startswith(".upload-resumable/")]
    assert len(keys) == 1, every_key
    return keys[0]


def received_bytes(app: AppServer) -> float:
    """Request body bytes the service has read from clients so far."""
    return get_metric(app.port, "upload_received_bytes_total")


def test_a_resumable_upload_is_stored_intact(
    bucket: Bucket, start_app: StartApp, tmp_path: Path
) -> None:
    app = start_app(bucket, part_size=PART, env={"UPLOAD_AUTH_TOKENS": TOKEN})
    path = tmp_path / "film é.mp4"
    sha = write_generated(path, 21 * MiB + 5)
    state_dir = tmp_path / "state"

    refused = run_app_command(
        *upload_command(path, app, state_dir), env={**NO_PROXY, "UPLOAD_TOKEN": "wrong" * 5}
    )
    assert refused.returncode == 1
    assert "upload failed: HTTP 401 unauthorized" in refused.stderr
    assert not state_dir.exists() or not list(state_dir.iterdir())

    result = run_app_command(
        *upload_command(path, app, state_dir), env={**NO_PROXY, "UPLOAD_TOKEN": TOKEN}
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert (answer["length"], answer["complete"]) == (21 * MiB + 5, True)
    key = stored_object(bucket)
    assert key == f"uploads/{answer['id']}/film é.mp4"
    assert answer["url"] == f"/files/{answer['id']}"  # the service's own answer (GET)
    assert (answer["object"]["key"], answer["object"]["sha256"]) == (key, sha)
    assert bucket.sha256(key) == sha
    assert bucket.incomplete_uploads() == []
    assert list(state_dir.iterdir()) == []  # nothing left to resume
    assert "sent 21.0 MiB" in result.stderr
    # Four PATCHes of 8 MiB at most, each read once: nothing sent twice.
    assert received_bytes(app) == 21 * MiB + 5


class HeldStore:
    """harness/faulty_s3.py on its own event loop in a thread, holding the third UploadPart
    until release()."""

    def __init__(self, upstream: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="held", daemon=True)
        self.thread.start()
        self.proxy = FaultyS3(upstream)
        asyncio.run_coroutine_threadsafe(self.proxy.start(), self.loop).result(timeout=10)
        self.released = asyncio.Event()
        self.proxy.faults.append(Fault("UploadPart", 3, 3, kind="hold", until=self.released))

    def holding(self) -> bool:
        return ("UploadPart", 3, "hold") in self.proxy.broken

    def release(self) -> None:
        self.loop.call_soon_threadsafe(self.released.set)

    def stop(self) -> None:
        self.release()
        asyncio.run_coroutine_threadsafe(self.proxy.stop(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture
def held_store(rclone: RcloneStore) -> Iterator[HeldStore]:
    store = HeldStore(rclone.endpoint)
    try:
        yield store
    finally:
        store.stop()


def test_a_killed_upload_is_continued_by_the_next_run(
    bucket: Bucket, start_app: StartApp, held_store: HeldStore, tmp_path: Path
) -> None:
    app = start_app(bucket, part_size=PART, env={"S3_ENDPOINT_URL": held_store.proxy.endpoint})
    size = 40 * MiB + 3
    path = tmp_path / "backup.tar"
    sha = write_generated(path, size, seed=7)
    state_dir = tmp_path / "state"

    first = subprocess.Popen(
        [sys.executable, "-m", "app", *upload_command(path, app, state_dir, "--quiet")],
        cwd=ROOT,
        env=service_environment(NO_PROXY),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        # The third part is on its way to storage: the client is blocked mid-PATCH.
        assert wait_until(held_store.holding, timeout=60), app.log()[-3000:]
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(timeout=10)
        assert first.stdout is not None and first.stderr is not None
        first.stdout.close()
        first.stderr.close()
    assert first.returncode == -signal.SIGKILL
    assert len(list(state_dir.iterdir())) == 1  # the upload's URL, for the next run
    held_store.release()
    # The service has finished with the killed client's request (and released the upload).
    assert wait_until(lambda: get_metric(app.port, "upload_requests_in_flight") == 0, timeout=60), (
        app.log()[-3000:]
    )
    assert bucket.incomplete_uploads() != []  # the unfinished upload waits in storage
    received_before = received_bytes(app)

    second = run_app_command(*upload_command(path, app, state_dir), env=NO_PROXY)
    assert second.returncode == 0, second.stderr
    resumed = [line for line in second.stderr.splitlines() if "resuming" in line]
    assert len(resumed) == 1, second.stderr
    # Only what the service did not hold went again: less than the file.
    sent_again = received_bytes(app) - received_before
    assert 0 < sent_again < size
    assert f"sent {sent_again / MiB:.1f} MiB" in second.stderr
    key = stored_object(bucket)
    assert key.endswith("/backup.tar")
    assert bucket.sha256(key) == sha
    assert bucket.incomplete_uploads() == []
    assert list(state_dir.iterdir()) == []
    answer = json.loads(second.stdout)
    assert (answer["length"], answer["complete"]) == (size, True)
    assert key == f"uploads/{answer['id']}/backup.tar"


def test_an_empty_file_is_stored_by_the_creation_whose_answer_is_printed(
    bucket: Bucket, start_app: StartApp, tmp_path: Path
) -> None:
    app = start_app(bucket, part_size=PART)
    path = tmp_path / "empty.log"
    path.write_bytes(b"")
    result = run_app_command(*upload_command(path, app, tmp_path / "state"), env=NO_PROXY)
    assert result.returncode == 0, result.stderr
    stored = json.loads(result.stdout)["object"]
    assert stored["size"] == 0
    assert stored["key"] == stored_object(bucket)
    assert bucket.read(stored["key"]) == b""
