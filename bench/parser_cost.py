"""`python -m bench.parser_cost`: what CR/LF-heavy bodies cost app.forms.multipart.MultipartStream.

A file made of CR, LF and partial boundaries keeps the parser on its slow path: every
`\\r\\n--` may begin a delimiter, so it must hold bytes back and look again. This prints, for
each payload, the CPU time (time.process_time) to parse a one-file body of `--size` fed in
`--chunk` pieces, its ratio to a random body of the same size, and how many `bytes` events
(the chunks the app handles one by one in Python) the parser emitted per MiB.
tests/unit/test_parser_cost.py bounds that event count; docs/testing.md records the timings.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

from app.forms.multipart import MultipartStream
from app.units import MiB, parse_size
from harness.forms import FilePart, content_type, multipart_body

BOUNDARY = "----streaming-upload-bench-7Qk2"
B = BOUNDARY.encode()


def payloads(size: int) -> dict[str, Callable[[], bytes]]:
    """File contents of `size` bytes: random, and the parser's worst cases we know of."""

    def repeat(unit: bytes) -> bytes:
        return (unit * (size // len(unit) + 1))[:size]

    return {
        "random": lambda: random.Random(1).randbytes(size),
        "crlf": lambda: repeat(b"\r\n"),
        "cr": lambda: repeat(b"\r"),
        "dashes": lambda: repeat(b"-"),
        "crlf-dashes": lambda: repeat(b"\r\n--"),
        "partial-boundary-1": lambda: repeat(b"\r\n--" + B[:1]),
        "partial-boundary-half": lambda: repeat(b"\r\n--" + B[: len(B) // 2]),
        "partial-boundary-all-but-1": lambda: repeat(b"\r\n--" + B[:-1]),
    }


def parse(body: bytes, chunk: int) -> tuple[float, int, int]:
    """CPU seconds, `bytes` events and file bytes for parsing `body` in `chunk` pieces."""
    stream = MultipartStream(
        {"content-type": content_type(BOUNDARY)},
        max_part_header_bytes=16 * 1024,
    )
    events = 0
    received = 0
    started = time.process_time()
    for start in range(0, len(body), chunk):
        for event in stream.feed(body[start : start + chunk]):
            if isinstance(event, bytes):
                events += 1
                received += len(event)
    for event in stream.finish():
        if isinstance(event, bytes):
            events += 1
            received += len(event)
    return time.process_time() - started, events, received


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="32MiB", help="file size (default 32MiB)")
    parser.add_argument("--chunk", default="64KiB", help="body chunk fed at once (64KiB)")
    parser.add_argument("--rounds", type=int, default=3, help="best of N rounds (3)")
    args = parser.parse_args(argv)
    size, chunk = parse_size(args.size), parse_size(args.chunk)

    print(f"file {size / MiB:.0f} MiB, fed in {chunk} B chunks, best of {args.rounds} rounds")
    print(f"{'payload':<28} {'cpu s':>7} {'MiB/s':>8} {'x random':>9} {'events/MiB':>11}")
    baseline: float | None = None
    for name, make in payloads(size).items():
        body = multipart_body([FilePart("file", "x.bin", make())], BOUNDARY)
        runs = [parse(body, chunk) for _ in range(max(args.rounds, 1))]
        seconds = min(r[0] for r in runs)
        _, events, received = runs[0]
        if received != size:
            raise SystemExit(f"{name}: parsed {received} bytes of {size}")
        baseline = seconds if baseline is None else baseline
        ratio = seconds / baseline if baseline else float("nan")
        print(
            f"{name:<28} {seconds:>7.3f} {size / MiB / max(seconds, 1e-9):>8.0f} "
            f"{ratio:>9.1f} {events / (size / MiB):>11.1f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
