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


def growing_part_size(number: int, base: int, max_parts: int, cap: int) -> int:
    """The size of part `number` (from 1) of an object whose length is not known ahead (a
    chunked body): S3 parts need not be equal, so they grow as the object does.

    The first tenth of `max_parts` parts have the `base` size, each later tenth twice the
    size of the one before, never more than `cap` (the most one part may hold in memory) nor
    S3's 5 GiB, in whole MiB. At 10 MiB parts a small object costs what it always did, while
    the 10,000 parts reach far past the 97.7 GiB that 10 MiB each would allow
    (`largest_growing_object`).
    """
    base = max(base, MIN_PART_SIZE)
    ceiling = max(min(cap, MAX_PART_SIZE) // MiB * MiB, base)
    tenth = max(max_parts // 10, 1)
    doublings = min((number - 1) // tenth, 32)
    return min(base << doublings, ceiling)


def largest_growing_object(base: int, max_parts: int, cap: int) -> int:
    """The most bytes `max_parts` parts of `growing_part_size` hold (at most S3's 5 TiB)."""
    base = max(base, MIN_PART_SIZE)
    tenth = max(max_parts // 10, 1)
    total, number = 0, 1
    while number <= max_parts:
        size = growing_part_size(number, base, max_parts, cap)
        run = min(tenth - (number - 1) % tenth, max_parts - number + 1)  # same size till then
        total += size * run
        number += run
    return min(total, MAX_OBJECT_SIZE)
