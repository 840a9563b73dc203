"""Framing: where a multipart body's delimiters lie, read from its bytes alone, in any split."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pytest

from app.forms.framing import Delimiter, Framing, HeadersTooLong, Mark, NearClose, Region
from tests.support import FieldPart, FilePart, Part, multipart_body, part_head
from tests.unit.forms.bodies import BOUNDARY_LINE, CLOSING, FORM_DATA, B, KiB, pieces

PARTS: list[Part] = [
    FilePart("doc", "notes.txt", b"line\r\n--" + B[:5] + b"\r\n-\r", "text/plain"),
    FieldPart("empty", ""),
    FieldPart("title", "two\r\nlines --"),
    FilePart("blob", "b.bin", b"\r\n--" + B + b"x\r\n\r\n--" + B + b"-\x00"),
]
BODY = multipart_body(PARTS)


def scan_all(chunks: Iterable[bytes], max_header_bytes: int = 1 * KiB) -> list[Mark]:
    framing = Framing(B, max_header_bytes=max_header_bytes)
    return [mark for chunk in chunks for mark in framing.scan(chunk)]


def delimiters(marks: Sequence[Mark]) -> list[Mark]:
    return [mark for mark in marks if not isinstance(mark, NearClose)]


def layout(parts: Sequence[Part], start: int = 0) -> list[Mark]:
    """The delimiters of `multipart_body(parts)` (behind `start` bytes), from its parts."""
    marks: list[Mark] = []
    at, size = start, None
    for part in parts:
        marks.append(Delimiter(at + len(BOUNDARY_LINE), size, closing=False))
        data = part.data if isinstance(part, FilePart) else part.value.encode()
        at += len(part_head(part)) + len(data) + len(b"\r\n")
        size = len(data)
    marks.append(Delimiter(at + len(CLOSING), size, closing=True))
    return marks


def test_a_body_in_one_chunk() -> None:
    assert delimiters(scan_all([BODY])) == layout(PARTS)


def test_the_same_delimiters_at_every_split() -> None:
    for at in range(len(BODY) + 1):
        assert delimiters(scan_all([BODY[:at], BODY[at:]])) == layout(PARTS), f"split at {at}"


def test_the_same_delimiters_byte_by_byte() -> None:
    assert delimiters(scan_all(pieces(BODY, 1))) == layout(PARTS)


@pytest.mark.parametrize(
    "epilogue", [b"", b"x", b"\r\n--" + B + b"\r\n" + FORM_DATA + b"\r\n", CLOSING * 3]
)
def test_nothing_after_the_close_delimiter_is_read(epilogue: bytes) -> None:
    framing = Framing(B, max_header_bytes=1 * KiB)

    marks = framing.scan(BODY + epilogue)

    assert delimiters(marks) == layout(PARTS)
    assert framing.region is Region.DONE
    assert framing.scan(b"\r\n--" + B + b"--\r\n" + b"x" * (4 * KiB)) == []


@pytest.mark.parametrize("pairs", [1, 3])
def test_crlf_pairs_before_the_first_boundary_line(pairs: int) -> None:
    lead = b"\r\n" * pairs
    assert scan_all([lead + BODY]) == layout(PARTS, start=len(lead))


@pytest.mark.parametrize("lead", [b"", b"\r\n", b"\r\n\r\n"])
def test_a_body_that_starts_with_the_close_delimiter_has_no_parts(lead: bytes) -> None:
    for chunks in ([lead + CLOSING + b"\r\n"], pieces(lead + CLOSING, 1)):
        assert scan_all(chunks) == [Delimiter(len(lead + CLOSING), None, closing=True)]


@pytest.mark.parametrize(
    "data", [CLOSING, CLOSING + b"\r\n", b"--" + B + b"\r\n", b"--" + B + b"----"]
)
def test_delimiter_bytes_at_the_start_of_a_body_are_data(data: bytes) -> None:
    """The CR LF before them ends the header section: they follow no line break of the body."""
    for parts in ([FilePart("f", "x", data)], [FieldPart("a", "v"), FilePart("f", "x", data)]):
        body = multipart_body(parts)
        for at in range(len(body) + 1):
            assert delimiters(scan_all([body[:at], body[at:]])) == layout(parts), f"at {at}"


def test_delimiter_bytes_in_a_header_section_are_not_delimiters() -> None:
    head = BOUNDARY_LINE + FORM_DATA + b"X-Note: 1\r\n--" + B + b"--\r\n--" + B + b"\r\n\r\n"
    body = head + b"data\r\n" + CLOSING + b"\r\n"
    assert scan_all(pieces(body, 3)) == [
        Delimiter(len(BOUNDARY_LINE), None, closing=False),
        Delimiter(len(body) - 2, len(b"data"), closing=True),
    ]


@pytest.mark.parametrize("size", [1, 7, 100, 10 * KiB])
@pytest.mark.parametrize("limit", [1 * KiB, 16 * KiB])
def test_header_section_at_the_limit_and_one_byte_over(size: int, limit: int) -> None:
    """The header section is the bytes after the boundary line up to its blank line."""
    filler = limit - len(FORM_DATA) - len(b"X-Pad: \r\n\r\n")
    head = FORM_DATA + b"X-Pad: " + b"p" * filler + b"\r\n\r\n"
    assert len(head) == limit
    at_limit = BOUNDARY_LINE + head + b"data\r\n" + CLOSING + b"\r\n"
    over = BOUNDARY_LINE + b"Y" + head + b"data\r\n" + CLOSING + b"\r\n"
    opening = Delimiter(len(BOUNDARY_LINE), None, closing=False)

    assert scan_all(pieces(at_limit, size), limit)[-1] == Delimiter(
        len(at_limit) - 2, len(b"data"), closing=True
    )
    assert scan_all(pieces(over, size), limit) == [
        opening,
        HeadersTooLong(len(BOUNDARY_LINE) + limit),
    ]


_A_PART = multipart_body([FieldPart("n", "v")])[: -len(CLOSING + b"\r\n")]
# The start of a body that never leaves its opening or a header section, where that began.
UNENDING = {
    "boundary-line": (b"--" + B + b"a", 0),
    "crlf-pairs": (b"\r\n", 0),
    "disposition-line": (
        BOUNDARY_LINE + b'Content-Disposition: form-data; name="a',
        len(BOUNDARY_LINE),
    ),
    "later-header-line": (BOUNDARY_LINE + FORM_DATA + b"X-Long: a", len(BOUNDARY_LINE)),
    "after-a-part": (
        _A_PART + BOUNDARY_LINE + FORM_DATA + b"X: a",
        len(_A_PART) + len(BOUNDARY_LINE),
    ),
}


@pytest.mark.parametrize(("head", "start"), UNENDING.values(), ids=UNENDING.keys())
@pytest.mark.parametrize("size", [1, 1000, 64 * KiB])
def test_a_line_that_never_ends_passes_the_limit_where_it_does(
    head: bytes, start: int, size: int
) -> None:
    body = head + head[-2:] * (64 * KiB)  # the same line, on and on
    framing = Framing(B, max_header_bytes=1 * KiB)
    marks: list[Mark] = []
    scanned = 0
    for chunk in pieces(body, size):
        marks += framing.scan(chunk)
        scanned += len(chunk)
        if framing.region is Region.DONE:
            break

    assert marks[-1] == HeadersTooLong(start + 1 * KiB)
    assert scanned - size <= start + 1 * KiB  # reported in the chunk that passed it


def near_close_body(after: bytes) -> bytes:
    return multipart_body([FilePart("f", "x", b"a\r\n--" + B + b"-" + after)])


def test_a_chunk_s_last_near_close_in_a_body_is_marked() -> None:
    body = near_close_body(b"xyz")
    end = body.index(b"\r\n--" + B + b"-x") + len(b"\r\n--" + B + b"-")
    for cut in range(end + 1, len(body) - len(CLOSING + b"\r\n\r\n")):
        framing = Framing(B, max_header_bytes=1 * KiB)
        assert framing.scan(body[:cut])[-1] == NearClose(end), f"cut at {cut}"


def test_a_near_close_is_not_marked_where_nothing_follows_it_or_a_delimiter_does() -> None:
    body = near_close_body(b"xyz")
    end = body.index(b"\r\n--" + B + b"-x") + len(b"\r\n--" + B + b"-")
    framing = Framing(B, max_header_bytes=1 * KiB)

    assert framing.scan(body[:end]) == [Delimiter(len(BOUNDARY_LINE), None, closing=False)]
    assert framing.scan(body[end:]) == layout([FilePart("f", "x", b"a\r\n--" + B + b"-xyz")])[1:]


def test_only_the_last_near_close_of_a_chunk_is_marked() -> None:
    data = b"\r\n--" + B + b"-1" + b"\r\n--" + B + b"-2" + b"tail"
    body = multipart_body([FilePart("f", "x", data)])
    last = body.index(b"-2") + 1
    framing = Framing(B, max_header_bytes=1 * KiB)

    assert framing.scan(body[: body.index(b"tail") + 2])[1:] == [NearClose(last)]


def test_a_near_close_outside_a_body_is_not_marked() -> None:
    head = BOUNDARY_LINE + FORM_DATA + b"X: 1\r\n--" + B + b"-x\r\n"
    assert scan_all([head]) == [Delimiter(len(BOUNDARY_LINE), None, closing=False)]
