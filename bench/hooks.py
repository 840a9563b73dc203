"""`python -m bench hooks`: what the pre-create hook adds to an upload's answer time.

Two uvicorn processes over one `rclone serve s3`, one with UPLOAD_HOOK_URL pointing at a
receiver on loopback (harness/hooks.py, allowing every file), one without. Small form uploads
(one 1 KiB file, so the hook's share is visible) go to each in turn, over one kept-alive
connection each; the report gives the answer times' percentiles for both, the difference of
the medians, and the service's own measure of its pre-create calls (upload_hook_seconds).
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from harness.clients import get_metric
from harness.forms import FilePart, content_type, multipart_body
from harness.hooks import HookReceiver
from harness.servers import AppServer
from harness.store import Bucket, RcloneStore

SECRET = "bench-hook-secret-0123456789"
UVICORN_OPTIONS = ("--loop", "uvloop", "--http", "httptools", "--no-access-log")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench hooks", description=__doc__)
    parser.add_argument("--uploads", type=int, default=300, help="uploads to each instance")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="hooks-bench-"))
    receiver = HookReceiver().start()
    started: list[RcloneStore | AppServer] = []
    try:
        store = RcloneStore(work / "s3", work / "rclone.log").start()
        started.append(store)
        apps: dict[str, AppServer] = {}
        for label, extra in (
            ("hooked", {"UPLOAD_HOOK_URL": receiver.url, "UPLOAD_HOOK_SECRET": SECRET}),
            ("plain", {}),
        ):
            bucket = Bucket(store.endpoint, label)
            settings = {**bucket.environment(), "S3_PROVIDER": "local", **extra}
            apps[label] = AppServer(label, work / f"{label}.log", settings, *UVICORN_OPTIONS)
            started.append(apps[label].start())
        body = multipart_body([FilePart("file", "a.bin", b"x" * 1024)])
        headers = {"content-type": content_type()}
        times: dict[str, list[float]] = {label: [] for label in apps}
        clients = {
            label: httpx.Client(base_url=app.url, timeout=30, trust_env=False)
            for label, app in apps.items()
        }
        for round_number in range(args.uploads + 10):
            order = list(apps) if round_number % 2 else list(reversed(apps))
            for label in order:
                begun = time.perf_counter()
                response = clients[label].post("/uploads", content=body, headers=headers)
                elapsed = time.perf_counter() - begun
                if response.status_code != 201:
                    raise SystemExit(f"{label}: HTTP {response.status_code} {response.text}")
                if round_number >= 10:  # the first ten warm up pools and imports
                    times[label].append(elapsed)
        for client in clients.values():
            client.close()
        hooked = apps["hooked"]
        labels = {"hook": "pre-create", "outcome": "allowed"}
        count = get_metric(hooked.port, "upload_hook_seconds_count", labels)
        total = get_metric(hooked.port, "upload_hook_seconds_sum", labels)
        print(report(times, count, total, shlex.join(["scripts/bench", "hooks", *argv])))
    finally:
        for proc in reversed(started):
            proc.stop()
        receiver.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


def report(times: dict[str, list[float]], count: float, total: float, command: str) -> str:
    ms = 1000.0
    lines = [
        f"Pre-create hook latency, {len(times['plain'])} uploads of 1 KiB each: `{command}`",
        "",
        "| | answer p50 | p90 | p99 | max |",
        "|---|---|---|---|---|",
    ]
    for label in ("plain", "hooked"):
        values = times[label]
        lines.append(
            f"| {label} | {statistics.median(values) * ms:.1f} ms | "
            f"{percentile(values, 0.9) * ms:.1f} ms | {percentile(values, 0.99) * ms:.1f} ms | "
            f"{max(values) * ms:.1f} ms |"
        )
    added = statistics.median(times["hooked"]) - statistics.median(times["plain"])
    lines += [
        "",
        f"- added to the median answer: {added * ms:.1f} ms",
        f"- the service's own measure (upload_hook_seconds, pre-create allowed): "
        f"{count:.0f} calls, mean {total / count * ms:.1f} ms",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
