"""The "direct" contender: `boto3 upload_file` from local disk, what `aws s3 cp` does.

Run as its own process (`python -m bench.direct ENDPOINT BUCKET KEY PATH`) so that its CPU,
memory and disk writes are its own; it prints one JSON line with what it measured around
the upload_file call (interpreter start-up and imports are left out, as they would be for a
long-running server).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time

from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from harness.store import MiB, s3_client
from harness.usage import ProcessUsage

# The AWS CLI's defaults for `aws s3 cp`.
TRANSFER = TransferConfig(
    multipart_threshold=50 * MiB, multipart_chunksize=10 * MiB, max_concurrency=10
)
# The service's default (S3_CHECKSUM_MODE): botocore >= 1.36 would otherwise add a CRC32 to
# every part that the other contenders do not compute. Unsigned payloads, as the service runs
# in the bench (S3_PAYLOAD_SIGNING=off). A pool for upload_file's ten threads.
CLIENT = Config(
    request_checksum_calculation="when_required",
    response_checksum_validation="when_required",
    max_pool_connections=16,
    s3={"payload_signing_enabled": False},
)


def main(argv: list[str]) -> int:
    endpoint, bucket, key, path = argv
    client = s3_client(endpoint, CLIENT)
    client.head_bucket(Bucket=bucket)  # connect and sign once before the clock starts
    usage = ProcessUsage(os.getpid())
    started = time.monotonic()
    client.upload_file(path, bucket, key, Config=TRANSFER)
    wall = time.monotonic() - started
    print(json.dumps({"wall": wall, **dataclasses.asdict(usage.read())}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
