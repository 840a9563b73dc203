"""Find and abort incomplete multipart uploads that a killed process left behind.

A request aborts its own uploads on every failure it lives through; a SIGKILL, an OOM kill
or storage being down during the abort leaves them instead. They are invisible in listings
but cost storage until aborted. `python -m app sweep --older-than 24h` lists those under the
key prefix (dry run); `--apply` aborts them. A bucket lifecycle rule does the same on a
schedule (docs/scaling.md); this command is for stores without one, and for checking.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Callable
from typing import Any

from app.errors import StorageFailed
from app.settings import HOOKS_PREFIX, Settings
from app.storage import S3Client
from app.storage.failures import describe, error_code
from app.storage.session import open_storage

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> dt.timedelta:
    """`90`, `90s`, `30m`, `24h`, `7d`."""
    match = _DURATION.match(text.lower())
    if match is None:
        raise ValueError(f"not a duration: {text!r} (e.g. 30m, 24h, 7d)")
    return dt.timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


@dataclasses.dataclass(frozen=True)
class Orphan:
    key: str
    upload_id: str
    initiated: dt.datetime


async def sweep(
    settings: Settings,
    older_than: dt.timedelta,
    *,
    apply: bool,
    report: Callable[[str], None] = print,
    now: dt.datetime | None = None,
) -> list[Orphan]:
    """List (and with `apply`, abort) incomplete uploads under the prefix older than that."""
    cutoff = (now or dt.datetime.now(dt.UTC)) - older_than
    found: list[Orphan] = []
    async with open_storage(settings) as storage:
        for upload in await _incomplete_uploads(storage, settings.s3_key_prefix):
            if upload["Key"].startswith(HOOKS_PREFIX):
                continue  # the hooks' records (never multipart, but never ours either)
            initiated: dt.datetime = upload["Initiated"]
            if initiated.tzinfo is None:
                initiated = initiated.replace(tzinfo=dt.UTC)
            if initiated <= cutoff:
                found.append(Orphan(upload["Key"], upload["UploadId"], initiated))
        for orphan in found:
            age = (now or dt.datetime.now(dt.UTC)) - orphan.initiated
            action = "aborting" if apply else "would abort"
            report(
                f"{action} {orphan.key} upload_id={orphan.upload_id} "
                f"initiated={orphan.initiated.isoformat()} age={age.total_seconds() / 3600:.1f}h"
            )
            if apply:
                await storage.call(
                    "AbortMultipartUpload",
                    storage.client.abort_multipart_upload,
                    Key=orphan.key,
                    UploadId=orphan.upload_id,
                )
    verb = "aborted" if apply else "found (dry run; --apply aborts them)"
    report(f"{len(found)} incomplete multipart upload(s) older than {older_than} {verb}")
    return found


async def _incomplete_uploads(storage: S3Client, prefix: str) -> list[dict[str, Any]]:
    """Every incomplete multipart upload under `prefix`, as ListMultipartUploads lists them."""
    paginator = storage.client.get_paginator("list_multipart_uploads")  # type: ignore[attr-defined]
    uploads: list[dict[str, Any]] = []
    try:
        async for page in paginator.paginate(Bucket=storage.bucket, Prefix=prefix):
            uploads += page.get("Uploads", [])
    except Exception as exc:
        # `rclone serve s3` answers 404 NoSuchUpload, not an empty list, in a bucket where no
        # multipart upload was ever created.
        if error_code(exc) == "NoSuchUpload":
            return []
        raise StorageFailed(f"storage ListMultipartUploads failed: {describe(exc)}") from exc
    return uploads
