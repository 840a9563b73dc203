"""`python -m bench resumable`: what a resumable upload costs against a form upload of the same
file, and what a connection cut halfway costs it.

One uvicorn process (the service as `python -m app serve` runs it: `local` profile, unsigned
payloads) over `rclone serve s3`, reached directly. Each round runs, in an order rotated from
round to round:
- `form`: `curl -F file=@PATH` to /uploads;
- `resumable`: a tus creation, then the whole file in one `curl -X PATCH -T PATH`;
- `resumable-cut`: the same, but the client sends half the file and closes the connection
  (a raw socket: the server sees a client that went away), asks HEAD for the offset, and
  sends the rest from there with `curl -C OFFSET -T PATH`.
Every object is read back by SHA-256. The report gives medians and the ratios of each round's
pair (the machine is noisy); "sent again" is the bytes the client had sent that the server had
not kept, which the second request sent again.
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from app.units import parse_size
from bench.contenders import BenchError, Sample, Target, TestFile, curl_upload
from harness.servers import AppServer
from harness.store import Bucket, RcloneStore
from harness.usage import ProcessUsage

MiB = 1024 * 1024
GiB = 1024 * MiB
UVICORN_OPTIONS = ("--loop", "uvloop", "--http", "httptools", "--no-access-log")
TUS = {"Tus-Resumable": "1.0.0"}


@dataclasses.dataclass(frozen=True)
class ResumableSample:
    wall: float
    app_cpu: float
    peak_rss_growth: int
    sent_again: int = 0


def _create(port: int, size: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", "/files/", headers={**TUS, "Upload-Length": str(size)})
        response = conn.getresponse()
        response.read()
        if response.status != 201:
            raise BenchError(f"creation answered {response.status}")
        return str(response.getheader("Location"))
    finally:
        conn.close()


def _head(port: int, url: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("HEAD", url, headers=TUS)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise BenchError(f"HEAD answered {response.status}")
        return int(response.getheader("Upload-Offset") or "0")
    finally:
        conn.close()


def _curl_patch(port: int, url: str, file: TestFile, offset: int) -> int:
    """The file from `offset` in one PATCH; the answer's status. curl asks `Expect:
    100-continue`, so a refusal (the previous request still holds the upload) comes before
    the body is sent."""
    command = ["curl", "--silent", "--show-error", "--noproxy", "*", "--max-time", "3600"]
    command += ["--request", "PATCH", "--upload-file", str(file.path), "--output", "/dev/null"]
    command += ["--write-out", "%{http_code}", "--header", "Tus-Resumable: 1.0.0"]
    command += ["--header", "Content-Type: application/offset+octet-stream"]
    command += ["--header", f"Upload-Offset: {offset}"]
    if offset:
        command += ["--continue-at", str(offset)]  # sends the file from there
    command.append(f"http://127.0.0.1:{port}{url}")
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600, check=False)
    status = int(done.stdout.strip() or 0)
    if done.returncode != 0 or status not in (204, 409, 423):
        raise BenchError(f"PATCH: curl {done.returncode}, HTTP {done.stdout!r}: {done.stderr}")
    return status


def _send_half_and_close(port: int, url: str, file: TestFile) -> int:
    """A client that goes away halfway: the request's head, half the body, then close."""
    half = file.size // 2
    head = (
        f"PATCH {url} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nTus-Resumable: 1.0.0\r\n"
        "Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n"
        f"Content-Length: {file.size}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port)) as sock, file.path.open("rb") as source:
        sock.sendall(head)
        sent = 0
        while sent < half:
            block = source.read(min(4 * MiB, half - sent))
            sock.sendall(block)
            sent += len(block)
    return half


def _stored_sha256(bucket: Bucket) -> str:
    keys = [k for k in bucket.keys() if not k.startswith(".upload-resumable/")]  # noqa: SIM118
    if len(keys) != 1:
        raise BenchError(f"expected one object, found {keys}")
    return bucket.sha256(keys[0])


def resumable_upload(target: Target, file: TestFile, *, cut: bool) -> ResumableSample:
    port, usage = target.app.port, ProcessUsage(target.app.pid)
    started = time.monotonic()
    url = _create(port, file.size)
    sent_again = 0
    if cut:
        sent = _send_half_and_close(port, url, file)
        # As a tus client does: HEAD, then PATCH from there. Until the server has seen the
        # client gone and kept what arrived, the upload is held (423) or HEAD's offset is
        # already behind (409): ask again.
        deadline = time.monotonic() + 60
        while True:
            offset = _head(port, url)
            if _curl_patch(port, url, file, offset) == 204:
                break
            if time.monotonic() > deadline:
                raise BenchError("the upload could not be resumed within 60 s")
            time.sleep(0.01)
        sent_again = sent - offset
    elif _curl_patch(port, url, file, 0) != 204:
        raise BenchError("the PATCH was refused")
    wall = time.monotonic() - started
    app = usage.read()
    try:
        if _stored_sha256(target.bucket) != file.sha256:
            raise BenchError("the stored bytes differ from the file")
    finally:
        target.bucket.purge()
    return ResumableSample(wall, app.cpu_seconds, app.peak_rss_growth, sent_again)


def _as_resumable(sample: Sample) -> ResumableSample:
    return ResumableSample(sample.wall, sample.app.cpu_seconds, sample.app.peak_rss_growth)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench resumable", description=__doc__)
    parser.add_argument("--size", default="1GiB")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--part-size", default="", help="UPLOAD_PART_SIZE (default: the service's)")
    parser.add_argument("--tmp-dir", type=Path)
    args = parser.parse_args(argv)
    size = parse_size(args.size)
    work = Path(tempfile.mkdtemp(prefix="resumable-bench-", dir=args.tmp_dir))
    started: list[RcloneStore | AppServer] = []
    try:
        from bench.__main__ import generate  # the main bench's test files

        file = generate(work / "file.bin", size)
        store = RcloneStore(work / "s3", work / "rclone.log").start()
        started.append(store)
        bucket = Bucket(store.endpoint, "resumable")
        settings = {**bucket.environment(), "S3_PROVIDER": "local", "S3_PAYLOAD_SIGNING": "off"}
        if args.part_size:
            settings["UPLOAD_PART_SIZE"] = args.part_size
        app = AppServer("service", work / "app.log", settings, *UVICORN_OPTIONS).start()
        started.append(app)
        target = Target("service, no nginx", app, bucket)
        plan: list[tuple[str, Callable[[], ResumableSample]]] = [
            ("form", lambda: _as_resumable(curl_upload(target, file, store))),
            ("resumable", lambda: resumable_upload(target, file, cut=False)),
            ("resumable-cut", lambda: resumable_upload(target, file, cut=True)),
        ]
        plan[0][1]()  # warm-up: imports, pools, first parts
        results: dict[str, list[ResumableSample]] = {key: [] for key, _ in plan}
        for round_number in range(args.rounds):
            by = round_number % len(plan)
            for key, run in plan[by:] + plan[:by]:
                sample = run()
                results[key].append(sample)
                print(
                    f"round {round_number + 1} {key}: {sample.wall:.2f} s, app CPU "
                    f"{sample.app_cpu:.2f} s, RSS +{sample.peak_rss_growth / MiB:.0f} MiB, "
                    f"sent again {sample.sent_again / MiB:.2f} MiB",
                    file=sys.stderr,
                )
        command = shlex.join(["scripts/bench", "resumable", *argv])
        print(report(results, size, command))
    finally:
        for proc in reversed(started):
            proc.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


def report(results: dict[str, list[ResumableSample]], size: int, command: str) -> str:
    def median(key: str, field: str) -> float:
        return statistics.median(getattr(s, field) for s in results[key])

    def ratios(key: str, base: str, field: str) -> str:
        pairs = [
            getattr(a, field) / getattr(b, field)
            for a, b in zip(results[key], results[base], strict=True)
        ]
        return f"{statistics.median(pairs):.2f} (rounds: {', '.join(f'{r:.2f}' for r in pairs)})"

    gib = size / GiB
    lines = [
        f"Resumable uploads, {size / MiB:.0f} MiB file, {len(results['form'])} rounds: `{command}`",
        "",
        "| | wall (median) | app CPU (median) | CPU per GiB | peak RSS growth | sent again |",
        "|---|---|---|---|---|---|",
    ]
    for key in results:
        lines.append(
            f"| {key} | {median(key, 'wall'):.2f} s | {median(key, 'app_cpu'):.2f} s | "
            f"{median(key, 'app_cpu') / gib:.2f} s | "
            f"{median(key, 'peak_rss_growth') / MiB:.0f} MiB | "
            f"{max(s.sent_again for s in results[key]) / MiB:.2f} MiB (max) |"
        )
    lines += [
        "",
        f"- resumable / form, app CPU: {ratios('resumable', 'form', 'app_cpu')}",
        f"- resumable / form, wall: {ratios('resumable', 'form', 'wall')}",
        f"- resumable-cut / resumable, wall: {ratios('resumable-cut', 'resumable', 'wall')}",
        f"- resumable-cut / resumable, app CPU: {ratios('resumable-cut', 'resumable', 'app_cpu')}",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
