"""tuspy, the tus project's Python client (from PyPI), against a real uvicorn process storing
into `rclone serve s3`: a multi-part upload with sha1 Upload-Checksum on every PATCH, and a
resume after the client's process was killed mid-PATCH. Every object is read back."""

from __future__ import annotations

import base64
import hashlib
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
import requests
from tusclient.client import TusClient

from harness.processes import ROOT, wait_until
from harness.store import Bucket, MiB
from tests.e2e.conftest import StartApp
from tests.e2e.tus import assert_completed, cut_off_patches, head_offset, metric

PART = 5 * MiB
SIZE = 23 * MiB  # five parts, the last one short
NO_PROXY = {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}


def test_tuspy_uploads_in_chunks_with_sha1_checksums(
    bucket: Bucket, start_app: StartApp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """3 MiB chunks over 5 MiB parts: most PATCHes end inside a part, so their last bytes are
    kept as the tail and joined to the next PATCH's."""
    for name, value in NO_PROXY.items():
        monkeypatch.setenv(name, value)
    app = start_app(bucket, part_size=PART)
    data = os.urandom(SIZE)
    path = tmp_path / "big.bin"
    path.write_bytes(data)

    # A spy on the PATCHes tuspy sends (it calls requests.patch): their offsets and checksums.
    sent: list[tuple[int, str, int]] = []
    real_patch = requests.patch

    def recording_patch(url: str, data: bytes, headers: dict[str, str], **options: Any) -> Any:
        sent.append((int(headers["upload-offset"]), headers["upload-checksum"], len(data)))
        return real_patch(url, data=data, headers=headers, **options)

    monkeypatch.setattr(requests, "patch", recording_patch)
    chunk = 3 * MiB
    with path.open("rb") as stream:  # given open: tuspy leaves the files it opens unclosed
        uploader = TusClient(f"{app.url}/files/").uploader(
            file_stream=stream,
            chunk_size=chunk,
            metadata={"filename": "big.bin"},
            upload_checksum=True,
        )
        uploader.upload()

    assert uploader.offset == SIZE
    assert [(offset, size) for offset, _, size in sent] == [
        (offset, min(chunk, SIZE - offset)) for offset in range(0, SIZE, chunk)
    ]
    for offset, header, size in sent:
        sha1 = hashlib.sha1(data[offset : offset + size]).digest()
        assert header == f"sha1 {base64.b64encode(sha1).decode()}"
    assert head_offset(app.url, uploader.url.removeprefix(app.url)) == SIZE
    record = assert_completed(bucket, uploader.url, data)
    assert record["key"].endswith("/big.bin")
    assert record["parts"] == -(-SIZE // PART)


class TuspyScript:
    """`python -m tests.e2e.tus` (tuspy as a user's script) as a child process, its output
    lines read by a thread so that a wait for one has a deadline."""

    def __init__(self, endpoint: str, path: Path, urls: Path, chunk: int, *flags: str) -> None:
        argv = [sys.executable, "-m", "tests.e2e.tus", endpoint, str(path), str(urls), str(chunk)]
        self.proc = subprocess.Popen(
            [*argv, *flags],
            cwd=ROOT,
            env={**os.environ, **NO_PROXY},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        assert self.proc.stdout is not None
        self._reader = threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True)
        self._reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line.strip())

    def line(self, timeout: float = 60) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            if self.proc.poll() is None:
                self.proc.kill()
            assert self.proc.stderr is not None
            errors = self.proc.stderr.read()
            raise AssertionError(f"tuspy printed nothing in {timeout} s: {errors}") from None

    def next_chunk(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self._reader.join(timeout=10)  # it ends at the end of the output
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def scripts() -> Iterator[list[TuspyScript]]:
    started: list[TuspyScript] = []
    yield started
    for script in started:
        script.kill()


def body_arriving(port: int) -> bool:
    """A connection to `port` has bytes queued that the server has not read (its socket's
    receive queue, from /proc/net/tcp): a request is being sent to a process that is stopped."""
    for row in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = row.split()
        local, state, queues = fields[1], fields[3], fields[4]
        ours = int(local.split(":")[1], 16) == port and state == "01"  # ESTABLISHED
        if ours and int(queues.split(":")[1], 16) > 64 * 1024:
            return True
    return False


@pytest.mark.parametrize("checksums", [True, False], ids=["sha1", "no-checksum"])
def test_tuspy_resumes_after_its_process_was_killed_mid_patch(
    bucket: Bucket, start_app: StartApp, tmp_path: Path, scripts: list[TuspyScript], checksums: bool
) -> None:
    """The second PATCH (12 MiB) is cut off by killing the client while it sends: the app is
    stopped (SIGSTOP) so that the body cannot all have left the client when it dies. With a
    sha1 checksum the server keeps none of that PATCH (bytes sent twice: what had arrived,
    under one chunk); without, it keeps what arrived (nothing is sent twice). The same script
    run again finds the upload's URL in its FileStorage, HEADs for the offset and sends the
    rest."""
    app = start_app(bucket, part_size=PART)
    size = 30 * MiB
    data = os.urandom(size)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    urls = tmp_path / "tus-urls.json"
    # Larger than what the sockets' buffers take from a client whose server does not read.
    chunk = 12 * MiB
    endpoint = f"{app.url}/files/"
    received_before = metric(app.port, "upload_received_bytes_total")

    flags = [] if checksums else ["plain"]
    first = TuspyScript(endpoint, path, urls, chunk, "paced", *flags)
    scripts.append(first)
    url = first.line().split()[1]
    first.next_chunk()
    assert first.line() == f"offset {chunk}"
    received_first = metric(app.port, "upload_received_bytes_total") - received_before
    assert received_first == chunk

    app.send_signal(signal.SIGSTOP)
    try:
        first.next_chunk()
        assert wait_until(lambda: body_arriving(app.port), timeout=30, interval=0.02)
        first.proc.send_signal(signal.SIGKILL)
        assert first.proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        app.send_signal(signal.SIGCONT)

    # The app reads what reached it, then the end of the connection: the PATCH was cut off.
    assert wait_until(lambda: cut_off_patches(app.port) == 1, 30)
    assert metric(app.port, "upload_requests_in_flight") == 0
    cut_bytes = metric(app.port, "upload_received_bytes_total") - received_before - chunk
    assert 0 < cut_bytes < chunk, "the whole PATCH had left the client: socket buffers > chunk?"
    kept = 0 if checksums else int(cut_bytes)
    resume_at = chunk + kept
    assert head_offset(app.url, url.removeprefix(app.url)) == resume_at

    second = TuspyScript(endpoint, path, urls, chunk, *flags)
    scripts.append(second)
    assert second.line() == f"url {url} offset {resume_at}"
    offsets = [second.line() for _ in range(resume_at, size, chunk)]
    assert offsets[-1] == f"offset {size}"
    assert second.proc.wait(timeout=60) == 0

    assert_completed(bucket, url, data)
    received = metric(app.port, "upload_received_bytes_total") - received_before
    appended = metric(app.port, "upload_resumable_appended_bytes_total")
    print(f"\nkilled mid-PATCH: {cut_bytes / MiB:.2f} MiB of the {chunk // MiB} MiB PATCH arrived")
    assert received - size == cut_bytes - kept  # sent again: what arrived and was not kept
    assert appended == size  # every byte kept counted once, a cut-off PATCH's too
