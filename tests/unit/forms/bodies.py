"""Bodies, byte strings and splits shared by the tests of app/forms and of its parser."""

from __future__ import annotations

import functools
import random

from app.client.formbody import FormField as FieldPart
from harness.forms import BOUNDARY, FilePart, Part, content_type, multipart_body, part_head

# The body helpers come from harness/forms.py (the shipped encoder, app/client/formbody.py, makes
# every well-formed body); the tests of app/forms import them from here with the rest.
__all__ = [
    "BOUNDARY",
    "FieldPart",
    "FilePart",
    "Part",
    "content_type",
    "multipart_body",
    "part_head",
]

KiB = 1024
MiB = 1024 * KiB
B = BOUNDARY.encode()
DELIMITER = b"\r\n--" + B  # what the library looks for inside a part's body
BOUNDARY_LINE = f"--{BOUNDARY}\r\n".encode()
CLOSING = b"--" + B + b"--"  # the close delimiter, without its CRLFs
FORM_DATA = b'Content-Disposition: form-data; name="a"; filename="a.txt"\r\n'


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[start : start + size] for start in range(0, len(data), size)]


def tiny_dash_chunks(dashes: bytes) -> tuple[str, list[bytes]]:
    """A valid body split so that `dashes` alone arrives right after a second part's headers."""
    data = multipart_body([FieldPart("a", "v"), FilePart("f", "x", dashes + b"rest")])
    head_end = data.index(b"\r\n\r\n", data.index(b'filename="x"')) + 4
    return content_type(), [data[:head_end], dashes, data[head_end + len(dashes) :]]


@functools.cache
def tricky_bytes(size: int) -> bytes:
    """CR, LF and dashes, with many near-misses of the delimiter, but never the delimiter."""
    rng = random.Random(2046)
    alphabet = b"\r\n-\r\n--x\x00"
    out = bytearray()
    while len(out) < size:
        if rng.random() < 0.1:
            out += b"\r\n--" + B[: rng.randrange(len(B))]
        else:
            out += bytes(rng.choices(alphabet, k=rng.randrange(1, 48)))
    data = bytes(out[:size])
    assert DELIMITER not in data
    return data
