"""Find and abort incomplete multipart uploads that a killed process left behind, and remove
expired resumable uploads.

A request aborts its own uploads on every failure it lives through; a SIGKILL, an OOM kill
or storage being down during the abort leaves them instead. They are invisible in listings
but cost storage until aborted. `python -m app sweep --older-than 24h` lists those under the
key prefix (dry run); `--apply` aborts them. A bucket lifecycle rule does the same on a
schedule (docs/scaling.md); this command is for stores without one, and for checking.

A resumable upload's multipart upload is meant to stay open across requests: it is never
judged by its age but by the expiry in its state (app/resumable/state.py). A live one is left
alone however old; an expired one is removed whole (its multipart upload, tail and state),
as is the state a completed upload keeps until its expiry.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Callable
from typing import Any

from app.errors import StorageFailed
from app.resumable.state import ResumableState, StateStore
from app.resumable.uploads import valid_id
from app.settings import HOOKS_PREFIX, RESUMABLE_PREFIX, Settings
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
    now = now or dt.datetime.now(dt.UTC)
    cutoff = now - older_than
    found: list[Orphan] = []
    async with open_storage(settings) as storage:
        states = StateStore(storage, conditional_writes=False)
        resumable = await _resumable_states(states)
        for upload in await _incomplete_uploads(storage, settings.s3_key_prefix):
            if upload["Key"].startswith((HOOKS_PREFIX, RESUMABLE_PREFIX)):
                continue  # bookkeeping (never multipart, but never ours either)
            state = resumable.get(upload["UploadId"])
            if state is not None and not state.expired(now.timestamp()):
                continue  # a live resumable upload: it stays open between requests
            initiated: dt.datetime = upload["Initiated"]
            if initiated.tzinfo is None:
                initiated = initiated.replace(tzinfo=dt.UTC)
            if initiated <= cutoff or state is not None:
                found.append(Orphan(upload["Key"], upload["UploadId"], initiated))
        for orphan in found:
            age = now - orphan.initiated
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
        expired = [s for s in resumable.values() if s.expired(now.timestamp())]
        for state in expired:
            what = "completed" if state.completed is not None else "unfinished"
            action = "removing" if apply else "would remove"
            report(
                f"{action} expired resumable upload {state.id} ({what}, {state.key}, "
                f"expired {dt.datetime.fromtimestamp(state.expires, dt.UTC).isoformat()})"
            )
            if apply:
                await states.remove_all(state.id)
    verb = "aborted" if apply else "found (dry run; --apply aborts them)"
    report(f"{len(found)} incomplete multipart upload(s) older than {older_than} {verb}")
    verb = "removed" if apply else "found (dry run; --apply removes them)"
    report(f"{len(expired)} expired resumable upload(s) {verb}")
    return found


async def _resumable_states(states: StateStore) -> dict[str, ResumableState]:
    """Every resumable upload's state, by its multipart upload id."""
    storage = states.storage
    paginator = storage.client.get_paginator("list_objects_v2")  # type: ignore[attr-defined]
    found: dict[str, ResumableState] = {}
    try:
        async for page in paginator.paginate(Bucket=storage.bucket, Prefix=RESUMABLE_PREFIX):
            for item in page.get("Contents", []):
                upload_id, _, name = item["Key"][len(RESUMABLE_PREFIX) :].partition("/")
                if name != "state.json" or not valid_id(upload_id):
                    continue
                loaded = await states.load(upload_id)
                if loaded is not None:
                    found[loaded[0].upload_id] = loaded[0]
    except StorageFailed:
        raise
    except Exception as exc:
        raise StorageFailed(f"storage ListObjectsV2 failed: {describe(exc)}") from exc
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
