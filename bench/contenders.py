"""One upload by one contender, measured and checked: the rows of the report come from here.

Every upload is verified (the stored object's SHA-256 must equal the file's) and deleted
right after, so a run never holds more than one round's objects on disk.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from harness.clients import Curl
from harness.processes import ROOT, Process
from harness.servers import service_environment
from harness.store import Bucket, MiB
from harness.usage import ProcessUsage, Usage


class BenchError(RuntimeError):
    """An upload failed or stored the wrong bytes: the contender's row says so."""


@dataclasses.dataclass(frozen=True)
class TestFile:
    path: Path
    size: int
    sha256: str


@dataclasses.dataclass
class Target:
    """An app server reached over HTTP, directly or through nginx."""

    name: str
    app: Process
    bucket: Bucket
    nginx: Process | None = None

    @property
    def url(self) -> str:
        port = self.nginx.port if self.nginx is not None else self.app.port
        return f"http://127.0.0.1:{port}/uploads"


@dataclasses.dataclass(frozen=True)
class Sample:
    """One measured upload (or, for concurrent uploads, one batch of them)."""

    wall: float
    #: Bytes of file data stored (all files of a batch).
    size: int
    app: Usage
    store_cpu: float
    nginx_cpu: float | None = None
    #: Seconds from the client's last body byte to the response (curl contenders only).
    lag: float | None = None


# curl -v --trace-time prefixes each informational and header line with the wall clock.
_TRACE_LINE = re.compile(r"^(\d\d):(\d\d):(\d\d(?:\.\d+)?) (.*)$")


def completion_lag(trace: str) -> float:
    """Seconds between curl's "upload completely sent off" and the final status line.

    curl 7.88 has no -w variable for the end of the upload (time_posttransfer came in 8.10),
    but its verbose trace logs the moment the last body byte was handed to the socket, and
    the moment the (non-100) response arrived; both lines carry --trace-time stamps.
    """
    sent: float | None = None
    answered: float | None = None
    for line in trace.splitlines():
        match = _TRACE_LINE.match(line)
        if match is None:
            continue
        hours, minutes, seconds, text = match.groups()
        stamp = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
        if sent is None and (
            "upload completely sent off" in text or "We are completely uploaded" in text
        ):
            sent = stamp
        elif text.startswith("< HTTP/") and " 100 " not in text:
            answered = stamp
    if sent is None or answered is None:
        raise BenchError(f"no upload-end or status line in curl's trace:\n{trace[-2000:]}")
    # Modulo a day, for a run that crosses midnight; an answer before the end of the upload
    # (a server answering early) counts as no lag.
    lag = (answered - sent) % 86400
    return 0.0 if lag > 43200 else lag


def _curl(target: Target, file: TestFile, limit_rate: str | None, trace: bool) -> Curl:
    # curl's own timings as one JSON line after the response body; with `trace`, its
    # verbose log on stderr (see completion_lag).
    options = ["--verbose", "--trace-time"] if trace else []
    return Curl(
        target.url,
        file.path,
        write_out="%{json}",
        max_time=3600,
        limit_rate=limit_rate,
        options=options,
    )


def _answer(curl: Curl, timeout: float) -> tuple[Any, dict[str, Any], str]:
    """The JSON answer, curl's timings and its stderr, or BenchError unless 201."""
    result = curl.wait(timeout)
    if result.timed_out:
        raise BenchError(f"curl did not finish within {timeout:.0f} s")
    if result.returncode != 0 or not result.written:
        raise BenchError(f"curl failed ({result.returncode}): {result.stderr[-2000:]}")
    info = json.loads(result.written)
    if info.get("http_code") != 201:
        raise BenchError(f"HTTP {info.get('http_code')}: {result.body[:500]}")
    return result.json(), info, result.stderr


def _verify(bucket: Bucket, answer: Any, file: TestFile) -> None:
    stored = answer["files"]
    if len(stored) != 1 or stored[0]["size"] != file.size:
        raise BenchError(f"unexpected answer: {answer}")
    if bucket.sha256(stored[0]["key"]) != file.sha256:
        raise BenchError(f"{stored[0]['key']}: the stored bytes differ from the file")


def _deadline(size: int, limit_rate: str | None) -> float:
    # Generous, yet a hung upload still ends the run: 20 MiB/s, or the rate limit's pace.
    return 120 + size / (5 * MiB if limit_rate else 20 * MiB)


def curl_upload(
    target: Target, file: TestFile, store: Process, limit_rate: str | None = None
) -> Sample:
    """`curl -F file=@PATH` to the target; wall is curl's own time_total."""
    return _curl_uploads(target, file, 1, store, limit_rate, single=True)


def concurrent_uploads(target: Target, file: TestFile, count: int, store: Process) -> Sample:
    """`count` curl uploads of the same file started together; wall ends with the last."""
    return _curl_uploads(target, file, count, store, None, single=False)


def _curl_uploads(
    target: Target,
    file: TestFile,
    count: int,
    store: Process,
    limit_rate: str | None,
    *,
    single: bool,
) -> Sample:
    """`count` curl uploads, measured; `single`: one upload timed by curl itself, with its
    completion lag."""
    app, store_usage = ProcessUsage(target.app.pid), ProcessUsage(store.pid)
    nginx = ProcessUsage(target.nginx.pid) if target.nginx is not None else None
    started = time.monotonic()
    curls = [_curl(target, file, limit_rate, trace=single) for _ in range(count)]
    try:
        answers = [_answer(curl, _deadline(file.size * count, limit_rate)) for curl in curls]
        wall = time.monotonic() - started
    finally:
        for curl in curls:
            curl.kill()
    # Read before verifying: reading the objects back costs the store CPU too.
    app_usage, store_cpu = app.read(), store_usage.cpu_seconds()
    nginx_cpu = nginx.cpu_seconds() if nginx is not None else None
    try:
        for answer, _, _ in answers:
            _verify(target.bucket, answer, file)
    finally:
        target.bucket.purge()
    lag = None
    if single:
        _, info, trace = answers[0]
        wall, lag = float(info["time_total"]), completion_lag(trace)
    return Sample(
        wall=wall,
        size=file.size * count,
        app=app_usage,
        store_cpu=store_cpu,
        nginx_cpu=nginx_cpu,
        lag=lag,
    )


def direct_upload(bucket: Bucket, file: TestFile, store: Process) -> Sample:
    """boto3 upload_file in a child process (bench/direct.py), which measures itself."""
    key = f"direct/{uuid.uuid4()}/{file.path.name}"
    store_usage = ProcessUsage(store.pid)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "bench.direct", bucket.endpoint, bucket.name, key, file.path],
            cwd=ROOT,
            env=service_environment(),
            capture_output=True,
            text=True,
            timeout=_deadline(file.size, None),
            check=False,
        )
    finally:
        store_cpu = store_usage.cpu_seconds()
    try:
        if done.returncode != 0:
            raise BenchError(f"upload_file failed: {done.stderr[-2000:]}")
        measured = json.loads(done.stdout.splitlines()[-1])
        if bucket.sha256(key) != file.sha256:
            raise BenchError(f"{key}: the stored bytes differ from the file")
    finally:
        bucket.purge()
    return Sample(
        wall=measured.pop("wall"), size=file.size, app=Usage(**measured), store_cpu=store_cpu
    )
