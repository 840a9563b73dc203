"""Coverage-guided fuzzing of the multipart glue (app/forms/multipart.py) with atheris.

`python tests/fuzz/multipart_atheris.py CORPUS_DIR -max_total_time=60` (libFuzzer flags).
Each input is a chunk size and a body. The oracle: feeding the body in chunks of that size
must give exactly what feeding it in one piece gives (the same parts, names and bytes, or the
same refusal), and the only exceptions are the service's own 4xx errors. That is what the
streaming-form-data workarounds in app/forms/multipart.py exist for; tests/fuzz/test_atheris.py runs
this for a bounded time in CI, seeded with valid bodies.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from app.errors import MalformedMultipart, PartHeadersTooLarge
    from app.forms.multipart import Event, MultipartStream, PartEnd, PartStart

BOUNDARY = "fuzz-boundary"
HEADERS = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
Parsed = tuple[str, list[tuple[str, str | None, bytes]]]


def parse(body: bytes, chunk: int) -> Parsed:
    """("ok", parts) or ("refused", []) for the body fed in pieces of `chunk` bytes."""
    stream = MultipartStream(HEADERS, max_part_header_bytes=1024)
    events: list[Event] = []
    try:
        for start in range(0, len(body), chunk):
            events += stream.feed(body[start : start + chunk])
        events += stream.finish()
    except (MalformedMultipart, PartHeadersTooLarge):
        return "refused", []
    parts: list[tuple[str, str | None, bytes]] = []
    current: PartStart | None = None
    data = bytearray()
    for event in events:
        if isinstance(event, PartStart):
            assert current is None, "a part started inside another"
            current, data = event, bytearray()
        elif isinstance(event, PartEnd):
            assert current is not None, "a part ended that never started"
            parts.append((current.field, current.filename, bytes(data)))
            current = None
        else:
            assert current is not None, "bytes outside a part"
            data += event
    assert current is None, "the body ended inside a part"
    return "ok", parts


def fuzz_input(chunk: int, body: bytes) -> bytes:
    """The input that feeds `body` in pieces of `chunk` (1 to 80) bytes."""
    return bytes([chunk - 1]) + body


def test_one_input(data: bytes) -> None:
    chunk = data[0] % 80 + 1 if data else 1
    body = data[1:]
    whole, pieces = parse(body, max(len(body), 1)), parse(body, chunk)
    # A body with no parts is answered 400 either way (no_file or malformed_multipart), and
    # how far the library reads into garbage before giving up does depend on the chunks.
    # Parts are what must never depend on them: their names, and the bytes we would store.
    if whole[1] or pieces[1]:
        assert whole == pieces, f"chunks of {chunk} parse differently: {pieces!r} != {whole!r}"


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
