"""The "direct" contender: `boto3 upload_file` from local disk, what `aws s3 cp` does.

Run as its own process (`python -m bench.direct ENDPOINT BUCKET KEY PATH`) so that its CPU,
memory and disk writes are its own; it prints one JSON line with what it measured around
the upload_file call (interpreter start-up and imports are left out, as they would be for a
long-running server).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from boto3.s3.transfer import TransferConfig

from bench.measure import cpu_seconds, write_bytes
from bench.store import MiB, s3_client

# The AWS CLI's defaults for `aws s3 cp`.
TRANSFER = TransferConfig(
    multipart_threshold=50 * MiB, multipart_chunksize=10 * MiB, max_concurrency=10
)


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise LookupError(field)


def main(argv: list[str]) -> int:
    endpoint, bucket, key, path = argv
    client = s3_client(endpoint)
    client.head_bucket(Bucket=bucket)  # connect and sign once before the clock starts
    # Writing 5 to clear_refs resets VmHWM to the current RSS, so VmHWM after the upload is
    # the peak during it, however short-lived.
    Path("/proc/self/clear_refs").write_text("5")
    rss_before = _status("VmRSS")
    pids = [int(Path("/proc/self").resolve().name)]
    cpu_before, written_before = cpu_seconds(pids), write_bytes(pids)
    started = time.monotonic()
    client.upload_file(path, bucket, key, Config=TRANSFER)
    wall = time.monotonic() - started
    print(
        json.dumps(
            {
                "wall": wall,
                "cpu": cpu_seconds(pids) - cpu_before,
                "rss": _status("VmHWM") - rss_before,
                "written": write_bytes(pids) - written_before,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
