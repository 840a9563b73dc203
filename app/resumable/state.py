"""A resumable upload's state, kept in the bucket so that any instance can continue it.

Under `.upload-resumable/<id>/`:
- `state.json`: what the upload is (its object key, multipart upload id, length, metadata,
  owner, expiry), the parts stored so far (number, size, ETag, the checksum each carried),
  the tail, the whole file's SHA-256 state up to the offset, and the lease of the request
  appending to it now, if any;
- `tail-<offset>`: the bytes past the last part (fewer than a part), which the next append
  joins to its own; `<offset>` is where the tail ends, so a new tail never overwrites the one
  the state points to.

Writes of `state.json` are conditional where the store enforces it (`If-None-Match: *` to
create, `If-Match` with the ETag read to update): of two instances updating one upload, one
fails, which is how the lease excludes a second appender across instances.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from typing import Any

import aiohttp
from botocore.exceptions import ResponseStreamingError

from app.errors import StorageFailed
from app.settings import RESUMABLE_PREFIX
from app.storage import S3Client
from app.storage.failures import describe, error_code
from app.storage.partsize import growing_part_size

#: Bumped when the state's meaning changes; a state of another version is not read.
STATE_VERSION = 1


def state_key(upload_id: str) -> str:
    return f"{RESUMABLE_PREFIX}{upload_id}/state.json"


def tail_key(upload_id: str, end: int) -> str:
    return f"{RESUMABLE_PREFIX}{upload_id}/tail-{end}"


@dataclasses.dataclass
class StoredPart:
    number: int
    size: int
    etag: str
    #: The checksum arguments the part was sent with (ContentMD5 or ChecksumCRC32C), for
    #: CompleteMultipartUpload and the check of the completed object.
    checks: dict[str, str]


@dataclasses.dataclass
class Tail:
    key: str
    size: int
    etag: str


@dataclasses.dataclass
class Lease:
    """The request appending now: `holder` is a random token, `until` a Unix time."""

    holder: str
    until: float

    def held(self, now: float) -> bool:
        return now < self.until


@dataclasses.dataclass
class ResumableState:
    id: str
    key: str  # the object's key once complete; the multipart upload's key until then
    upload_id: str  # the S3 multipart upload
    length: int | None  # declared, or None until an IETF client's last append says it
    part_size: int  # of every part but the last (the base size, when parts grow)
    part_cap: int  # the largest a growing part gets
    growing: bool  # the length is unknown: parts grow (app/storage/partsize.py)
    metadata: str  # Upload-Metadata as the client sent it (tus HEAD echoes it)
    filename: str
    content_type: str
    owner: str | None  # the token's name that created it; only that name may continue it
    protocol: str  # of the creating request (informative)
    created: float
    expires: float
    parts: list[StoredPart] = dataclasses.field(default_factory=list)
    tail: Tail | None = None
    sha256_state: str | None = None  # app/resumable/sha256.py, over bytes [0, offset)
    lease: Lease | None = None
    completed: dict[str, Any] | None = None  # the stored object's record, once complete
    version: int = STATE_VERSION

    @property
    def offset(self) -> int:
        """Bytes durably stored: the parts' and the tail's."""
        return sum(part.size for part in self.parts) + (self.tail.size if self.tail else 0)

    @property
    def parts_size(self) -> int:
        return sum(part.size for part in self.parts)

    def part_size_of(self, number: int, max_parts: int) -> int:
        """The size of part `number` (from 1); a pure function of the state, so every
        instance cuts the same parts."""
        if self.growing:
            return growing_part_size(number, self.part_size, max_parts, self.part_cap)
        return self.part_size

    def expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.expires

    def to_json(self) -> bytes:
        return json.dumps(dataclasses.asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> ResumableState:
        return cls.from_dict(json.loads(raw))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ResumableState:
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"state version {data.get('version')!r} is not {STATE_VERSION}")
        data["parts"] = [StoredPart(**part) for part in data["parts"]]
        data["tail"] = Tail(**data["tail"]) if data["tail"] else None
        data["lease"] = Lease(**data["lease"]) if data["lease"] else None
        return cls(**data)


#: Reads of a torn state.json before giving up, and the pause before the next (times the try).
TORN_READ_ATTEMPTS = 5
TORN_READ_PAUSE = 0.05


class _TornRead(Exception):
    """The body ended before its Content-Length: the object was being rewritten."""


class StateConflict(Exception):
    """The state changed since it was read (another instance wrote it): this write lost."""


class StateStore:
    """Reads and writes the state objects; conditional where the store enforces it."""

    def __init__(self, storage: S3Client, *, conditional_writes: bool) -> None:
        self.storage = storage
        self.conditional_writes = conditional_writes

    async def load(self, upload_id: str) -> tuple[ResumableState, str] | None:
        """The state and its ETag, or None if there is none.

        A store that replaces an object in place (`rclone serve s3`) can hand out a torn copy
        while it is being rewritten: a body shorter than its Content-Length, or JSON cut
        short. That is read again, a few times, rather than taken for a missing upload (a
        client told 404 starts over) or a storage failure.
        """
        for attempt in range(TORN_READ_ATTEMPTS):
            if attempt:
                await asyncio.sleep(TORN_READ_PAUSE * attempt)
            try:
                raw, etag = await self._get(upload_id)
            except _TornRead:
                continue
            if raw is None:
                return None
            try:
                data = json.loads(raw)
            except ValueError:
                continue  # cut short: read again
            try:
                return ResumableState.from_dict(data), etag
            except (ValueError, TypeError, KeyError, AttributeError):
                return None  # another version's, or not ours: as good as unknown
        raise StorageFailed(f"the state of upload {upload_id} could not be read whole")

    async def _get(self, upload_id: str) -> tuple[bytes | None, str]:
        try:
            response = await self.storage.client.get_object(
                Bucket=self.storage.bucket, Key=state_key(upload_id)
            )
        except (aiohttp.ClientPayloadError, ResponseStreamingError) as exc:
            raise _TornRead(describe(exc)) from exc  # botocore may read a small body itself
        except Exception as exc:
            if error_code(exc) in ("NoSuchKey", "404", "NotFound"):
                return None, ""
            raise StorageFailed(f"storage GetObject failed: {describe(exc)}") from exc
        try:
            async with response["Body"] as body:
                raw: bytes = await body.read()
        except Exception as exc:
            raise _TornRead(describe(exc)) from exc
        return raw, str(response["ETag"])

    async def create(self, state: ResumableState) -> str:
        """Write a new state; its key must not exist. Returns the new ETag."""
        condition = {"IfNoneMatch": "*"} if self.conditional_writes else {}
        return await self._put(state, condition)

    async def save(self, state: ResumableState, etag: str) -> str:
        """Replace the state read with `etag`; StateConflict if it changed since."""
        condition = {"IfMatch": etag} if self.conditional_writes else {}
        return await self._put(state, condition)

    async def _put(self, state: ResumableState, condition: dict[str, str]) -> str:
        try:
            response = await self.storage.client.put_object(
                Bucket=self.storage.bucket,
                Key=state_key(state.id),
                Body=state.to_json(),
                ContentType="application/json",
                **condition,
            )
        except Exception as exc:
            if condition and error_code(exc) in (
                "PreconditionFailed",
                "ConditionalRequestConflict",
                "NoSuchKey",
            ):
                raise StateConflict(describe(exc)) from exc
            raise StorageFailed(f"storage PutObject failed: {describe(exc)}") from exc
        return str(response["ETag"])

    async def delete(self, key: str) -> None:
        await self.storage.delete(key)

    async def remove_all(self, upload_id: str) -> None:
        """Every object under the upload's bookkeeping prefix (state and tails)."""
        storage = self.storage
        prefix = f"{RESUMABLE_PREFIX}{upload_id}/"
        listing = await storage.call("ListObjectsV2", storage.client.list_objects_v2, Prefix=prefix)
        for item in listing.get("Contents", []):
            await storage.delete(item["Key"])
