"""Part-size arithmetic for S3 multipart uploads, kept pure so it can be tested exhaustively."""

from __future__ import annotations

from app.units import GiB, MiB

#: S3 refuses parts below 5 MiB (except the last) and above 5 GiB; B2 and MinIO agree.
MIN_PART_SIZE = 5 * MiB
MAX_PART_SIZE = 5 * GiB
#: A single PutObject can carry at most 5 GiB.
MAX_SINGLE_PUT = 5 * GiB

#: S3, B2 and MinIO accept at most 10,000 parts in one multipart upload.
MAX_PARTS = 10_000
#: The largest object S3 stores (5 TiB).
MAX_OBJECT_SIZE = 5 * 1024 * GiB


class ObjectTooLarge(ValueError):
    """No allowed part size can carry an object this large."""


def plan_part_size(configured: int, expected_size: int | None, max_parts: int = MAX_PARTS) -> int:
    """Part size for an object of about `expected_size` bytes (None when unknown).

    The configured size is used unless the object would need more than `max_parts` parts;
    then the size grows to the smallest whole MiB that fits, so a 500 GiB upload with 10 MiB
    parts is sent as 10,000 parts of 52 MiB instead of failing at part 10,001.
    """
    size = max(configured, MIN_PART_SIZE)
    if expected_size is not None and expected_size > MAX_OBJECT_SIZE:
        raise ObjectTooLarge(f"{expected_size} bytes is more than S3's 5 TiB object limit")
    if expected_size is None or expected_size <= size * max_parts:
        return size
    needed = -(-expected_size // max_parts)  # ceiling division
    size = -(-needed // MiB) * MiB
    if size > MAX_PART_SIZE:
        raise ObjectTooLarge(f"{expected_size} bytes does not fit in {max_parts} parts of 5 GiB")
    return size
