"""One upload by one contender, measured and checked: the rows of the report come from here.

Every upload is verified (the stored object's SHA-256 must equal the file's) and deleted
right after, so a run never holds more than one round's objects on disk.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from bench.measure import Usage, Watch
from bench.processes import ROOT, Process, aws_environment
from bench.store import Bucket, MiB


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


def _curl_command(url: str, path: Path, limit_rate: str | None, trace: bool) -> list[str]:
    command = [
        "curl",
        "--silent",
        "--show-error",
        "--noproxy",
        "*",
        "--max-time",
        "3600",
        "--output",
        "-",
        # The response body, then curl's own timings as one JSON line at the end.
        "--write-out",
        "\n%{json}",
        "--form",
        f"file=@{path}",
    ]
    if trace:
        command += ["--verbose", "--trace-time"]
    if limit_rate is not None:
        command += ["--limit-rate", limit_rate]
    return [*command, url]


def _finish_curl(proc: subprocess.Popen[str], timeout: float) -> tuple[Any, dict[str, Any], str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=10)
        raise BenchError(f"curl did not finish within {timeout:.0f} s") from None
    body, _, timings = out.rpartition("\n")
    if proc.returncode != 0 or not timings:
        raise BenchError(f"curl failed ({proc.returncode}): {err[-2000:]}")
    info = json.loads(timings)
    if info.get("http_code") != 201:
        raise BenchError(f"HTTP {info.get('http_code')}: {body[:500]}")
    return json.loads(body), info, err


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
    app, store_watch = Watch(target.app.pid).start(), Watch(store.pid).start()
    nginx = Watch(target.nginx.pid).start() if target.nginx is not None else None
    proc = subprocess.Popen(
        _curl_command(target.url, file.path, limit_rate, trace=True),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        answer, info, trace = _finish_curl(proc, _deadline(file.size, limit_rate))
    finally:
        app_usage, store_usage = app.stop(), store_watch.stop()
        nginx_usage = nginx.stop() if nginx is not None else None
    try:
        _verify(target.bucket, answer, file)
    finally:
        target.bucket.purge()
    return Sample(
        wall=float(info["time_total"]),
        size=file.size,
        app=app_usage,
        store_cpu=store_usage.cpu_seconds,
        nginx_cpu=nginx_usage.cpu_seconds if nginx_usage is not None else None,
        lag=completion_lag(trace),
    )


def concurrent_uploads(target: Target, file: TestFile, count: int, store: Process) -> Sample:
    """`count` curl uploads of the same file started together; wall ends with the last."""
    app, store_watch = Watch(target.app.pid).start(), Watch(store.pid).start()
    nginx = Watch(target.nginx.pid).start() if target.nginx is not None else None
    started = time.monotonic()
    procs = [
        subprocess.Popen(
            _curl_command(target.url, file.path, None, trace=False),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    answers = []
    try:
        for proc in procs:
            answers.append(_finish_curl(proc, _deadline(file.size * count, None))[0])
        wall = time.monotonic() - started
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=10)
        app_usage, store_usage = app.stop(), store_watch.stop()
        nginx_usage = nginx.stop() if nginx is not None else None
    try:
        for answer in answers:
            _verify(target.bucket, answer, file)
    finally:
        target.bucket.purge()
    return Sample(
        wall=wall,
        size=file.size * count,
        app=app_usage,
        store_cpu=store_usage.cpu_seconds,
        nginx_cpu=nginx_usage.cpu_seconds if nginx_usage is not None else None,
    )


def direct_upload(bucket: Bucket, file: TestFile, store: Process) -> Sample:
    """boto3 upload_file in a child process (bench/direct.py), which measures itself."""
    key = f"direct/{uuid.uuid4()}/{file.path.name}"
    store_watch = Watch(store.pid).start()
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.direct",
                bucket.endpoint,
                bucket.name,
                key,
                str(file.path),
            ],
            cwd=ROOT,
            env={**os.environ, **aws_environment()},
            capture_output=True,
            text=True,
            timeout=_deadline(file.size, None),
            check=False,
        )
    finally:
        store_usage = store_watch.stop()
    try:
        if done.returncode != 0:
            raise BenchError(f"upload_file failed: {done.stderr[-2000:]}")
        measured = json.loads(done.stdout.splitlines()[-1])
        if bucket.sha256(key) != file.sha256:
            raise BenchError(f"{key}: the stored bytes differ from the file")
    finally:
        bucket.purge()
    return Sample(
        wall=measured["wall"],
        size=file.size,
        app=Usage(measured["cpu"], measured["rss"], measured["written"]),
        store_cpu=store_usage.cpu_seconds,
    )
