"""CR/LF-heavy file bodies (the parser's slow path): a deterministic bound on their cost.

Inside a part, every `\\r\\n--` may begin a delimiter, so a body made of CR, LF, dashes and
partial boundaries keeps streaming-form-data's C parser looking back. That costs C time
(bench/parser_cost.py measures it; docs/testing.md has the figures: about 35x a random body,
still tens of MiB/s per core). What would make it expensive for *us* is the parser cutting
such a body into many small `bytes` events, each handled by Python code in the request loop
(hashing, buffering, awaits). Timings are not asserted here (benchmarks, not timed tests):
the event count is, and it is deterministic: never more than one `bytes` event per chunk fed,
whatever the bytes, so the Python work per MiB depends on the chunk size only.
"""

from __future__ import annotations

import pytest

from app.forms.multipart import MultipartStream, PartEnd, PartStart
from tests.unit.forms.bodies import (
    BOUNDARY,
    FilePart,
    content_type,
    part_head,
)

KiB = 1024
MiB = 1024 * KiB
B = BOUNDARY.encode()


def repeat(unit: bytes, size: int) -> bytes:
    return (unit * (size // len(unit) + 1))[:size]


SLOW_PATH = {
    "crlf": b"\r\n",
    "cr": b"\r",
    "dashes": b"-",
    "crlf-dashes": b"\r\n--",
    "partial-boundary-1": b"\r\n--" + B[:1],
    "partial-boundary-half": b"\r\n--" + B[: len(B) // 2],
    "partial-boundary-all-but-1": b"\r\n--" + B[:-1],
    # A near-miss of the delimiter that also ends in CR LF, so the next unit starts a new one.
    "near-miss-then-crlf": b"\r\n--" + B[:-1] + b"\r\n",
}

# (chunk size, file size): uvicorn hands the app 64 KiB at most; smaller chunks are what a
# slow or hostile client's small TCP segments give. Sizes keep each case well under a second.
FEEDS = [(64 * KiB, 4 * MiB), (4 * KiB, 2 * MiB), (100, 128 * KiB)]


def parse(data: bytes, chunk: int) -> tuple[int, int, bytes]:
    """Feed a one-file body carrying `data` in `chunk` pieces: (feeds, bytes events, data)."""
    head = part_head(FilePart("file", "x.bin", b""))
    body = head + data + f"\r\n--{BOUNDARY}--\r\n".encode()
    stream = MultipartStream({"content-type": content_type()}, max_part_header_bytes=16 * KiB)
    feeds = 0
    events = []
    for start in range(0, len(body), chunk):
        feeds += 1
        events += stream.feed(body[start : start + chunk])
    events += stream.finish()
    assert stream.ended
    assert isinstance(events[0], PartStart) and isinstance(events[-1], PartEnd)
    pieces = [event for event in events if isinstance(event, bytes)]
    return feeds, len(pieces), b"".join(pieces)


@pytest.mark.parametrize(("chunk", "size"), FEEDS, ids=[f"chunk-{c}" for c, _ in FEEDS])
@pytest.mark.parametrize("unit", SLOW_PATH.values(), ids=SLOW_PATH.keys())
def test_slow_path_bodies_give_at_most_one_event_per_chunk(
    unit: bytes, chunk: int, size: int
) -> None:
    data = repeat(unit, size)
    feeds, events, received = parse(data, chunk)

    assert received == data  # intact: no byte of the file is taken for a delimiter
    # One event per chunk fed at most (plus the held-back tail, released at the end): per
    # MiB, about MiB / chunk events whatever the bytes.
    assert events <= feeds + 1, f"{events} bytes events for {feeds} chunks"


@pytest.mark.parametrize("unit", SLOW_PATH.values(), ids=SLOW_PATH.keys())
def test_slow_path_events_are_no_more_than_for_random_bytes(unit: bytes) -> None:
    """The same count as a body of random bytes of that size: the slow path adds none."""
    size, chunk = 2 * MiB, 64 * KiB
    random_bytes = repeat(bytes(range(256)), size)
    _, baseline, _ = parse(random_bytes, chunk)
    _, events, _ = parse(repeat(unit, size), chunk)
    assert events <= baseline + 1
