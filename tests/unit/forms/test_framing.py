"""Framing: where a multipart body's delimiters lie, read from its bytes alone, in any split."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pytest

from app.forms.framing import (
    Delimiter,
    Framing,
    HeaderSection,
    HeadersTooLong,
    Mark,
    NearClose,
    Region,
)
from tests.unit.forms import bodies

PARTS: list[bodies.Part] = [
    bodies.FilePart("doc", "notes.txt", b"line\r\n--" + bodies.B[:5] + b"\r\n-\r", "text/plain"),
    bodies.FieldPart("empty", ""),
    bodies.FieldPart("title", "two\r\nlines --"),
    bodies.FilePart("blob", "b.bin", b"\r\n--" + bodies.B + b"x\r\n\r\n--" + bodies.B + b"-\x00"),
]
BODY = bodies.multipart_body(PARTS)


def scan_all(chunks: Iterable[bytes], max_header_bytes: int = 1 * bodies.KiB) -> list[Mark]:
    framing = Framing(bodies.B, max_header_bytes=max_header_bytes)
    return [mark for chunk in chunks for mark in framing.scan(chunk)]


def delimiters(marks: Sequence[Mark]) -> list[Mark]:
    return [mark for mark in marks if not isinstance(mark, NearClose)]


def layout(parts: Sequence[bodies.Part], start: int = 0) -> list[Mark]:
    """The delimiters of `multipart_body(parts)` (behind `start` bytes), from its parts."""
    marks: list[Mark] = []
    at, size = start, None
    for part in parts:
        marks.append(Delimiter(at + len(bodies.BOUNDARY_LINE), size, closing=False))
        data = part.data if isinstance(part, bodies.FilePart) else part.value.encode()
        at += len(bodies.part_head(part)) + len(data) + len(b"\r\n")
        size = len(data)
    marks.append(Delimiter(at + len(bodies.CLOSING), size, closing=True))
    return marks


def test_a_body_in_one_chunk() -> None:
    assert delimiters(scan_all([BODY])) == layout(PARTS)


def test_the_same_delimiters_at_every_split() -> None:
    for at in range(len(BODY) + 1):
        assert delimiters(scan_all([BODY[:at], BODY[at:]])) == layout(PARTS), f"split at {at}"


def test_the_same_delimiters_byte_by_byte() -> None:
    assert delimiters(scan_all(bodies.pieces(BODY, 1))) == layout(PARTS)


@pytest.mark.parametrize(
    "epilogue",
    [b"", b"x", b"\r\n--" + bodies.B + b"\r\n" + bodies.FORM_DATA + b"\r\n", bodies.CLOSING * 3],
)
def test_nothing_after_the_close_delimiter_is_read(epilogue: bytes) -> None:
    framing = Framing(bodies.B, max_header_bytes=1 * bodies.KiB)

    marks = framing.scan(BODY + epilogue)

    assert delimiters(marks) == layout(PARTS)
    assert framing.region is Region.DONE
    assert framing.scan(b"\r\n--" + bodies.B + b"--\r\n" + b"x" * (4 * bodies.KiB)) == []


@pytest.mark.parametrize("pairs", [1, 3])
def test_crlf_pairs_before_the_first_boundary_line(pairs: int) -> None:
    lead = b"\r\n" * pairs
    assert scan_all([lead + BODY]) == layout(PARTS, start=len(lead))


@pytest.mark.parametrize("lead", [b"", b"\r\n", b"\r\n\r\n"])
def test_a_body_that_starts_with_the_close_delimiter_has_no_parts(lead: bytes) -> None:
    for chunks in ([lead + bodies.CLOSING + b"\r\n"], bodies.pieces(lead + bodies.CLOSING, 1)):
        assert scan_all(chunks) == [Delimiter(len(lead + bodies.CLOSING), None, closing=True)]


@pytest.mark.parametrize(
    "data",
    [
        bodies.CLOSING,
        bodies.CLOSING + b"\r\n",
        b"--" + bodies.B + b"\r\n",
        b"--" + bodies.B + b"----",
    ],
)
def test_delimiter_bytes_at_the_start_of_a_body_are_data(data: bytes) -> None:
    """The CR LF before them ends the header section: they follow no line break of the body."""
    for parts in (
        [bodies.FilePart("f", "x", data)],
        [bodies.FieldPart("a", "v"), bodies.FilePart("f", "x", data)],
    ):
        body = bodies.multipart_body(parts)
        for at in range(len(body) + 1):
            assert delimiters(scan_all([body[:at], body[at:]])) == layout(parts), f"at {at}"


def test_delimiter_bytes_in_a_header_section_are_not_delimiters() -> None:
    head = (
        bodies.BOUNDARY_LINE
        + bodies.FORM_DATA
        + b"X-Note: 1\r\n--"
        + bodies.B
        + b"--\r\n--"
        + bodies.B
        + b"\r\n\r\n"
    )
    body = head + b"data\r\n" + bodies.CLOSING + b"\r\n"
    assert scan_all(bodies.pieces(body, 3)) == [
        Delimiter(len(bodies.BOUNDARY_LINE), None, closing=False),
        Delimiter(len(body) - 2, len(b"data"), closing=True),
    ]


@pytest.mark.parametrize("size", [1, 7, 100, 10 * bodies.KiB])
@pytest.mark.parametrize("limit", [1 * bodies.KiB, 16 * bodies.KiB])
def test_header_section_at_the_limit_and_one_byte_over(size: int, limit: int) -> None:
    """The header section is the bytes after the boundary line up to its blank line."""
    filler = limit - len(bodies.FORM_DATA) - len(b"X-Pad: \r\n\r\n")
    head = bodies.FORM_DATA + b"X-Pad: " + b"p" * filler + b"\r\n\r\n"
    assert len(head) == limit
    at_limit = bodies.BOUNDARY_LINE + head + b"data\r\n" + bodies.CLOSING + b"\r\n"
    over = bodies.BOUNDARY_LINE + b"Y" + head + b"data\r\n" + bodies.CLOSING + b"\r\n"
    opening = Delimiter(len(bodies.BOUNDARY_LINE), None, closing=False)

    assert scan_all(bodies.pieces(at_limit, size), limit)[-1] == Delimiter(
        len(at_limit) - 2, len(b"data"), closing=True
    )
    assert scan_all(bodies.pieces(over, size), limit) == [
        opening,
        HeadersTooLong(len(bodies.BOUNDARY_LINE) + limit),
    ]


_A_PART = bodies.multipart_body([bodies.FieldPart("n", "v")])[: -len(bodies.CLOSING + b"\r\n")]
# The start of a body that never leaves its opening or a header section, where that began.
UNENDING = {
    "boundary-line": (b"--" + bodies.B + b"a", 0),
    "crlf-pairs": (b"\r\n", 0),
    "disposition-line": (
        bodies.BOUNDARY_LINE + b'Content-Disposition: form-data; name="a',
        len(bodies.BOUNDARY_LINE),
    ),
    "later-header-line": (
        bodies.BOUNDARY_LINE + bodies.FORM_DATA + b"X-Long: a",
        len(bodies.BOUNDARY_LINE),
    ),
    "after-a-part": (
        _A_PART + bodies.BOUNDARY_LINE + bodies.FORM_DATA + b"X: a",
        len(_A_PART) + len(bodies.BOUNDARY_LINE),
    ),
}


@pytest.mark.parametrize(("head", "start"), UNENDING.values(), ids=UNENDING.keys())
@pytest.mark.parametrize("size", [1, 1000, 64 * bodies.KiB])
def test_a_line_that_never_ends_passes_the_limit_where_it_does(
    head: bytes, start: int, size: int
) -> None:
    body = head + head[-2:] * (64 * bodies.KiB)  # the same line, on and on
    framing = Framing(bodies.B, max_header_bytes=1 * bodies.KiB)
    marks: list[Mark] = []
    scanned = 0
    for chunk in bodies.pieces(body, size):
        marks += framing.scan(chunk)
        scanned += len(chunk)
        if framing.region is Region.DONE:
            break

    assert marks[-1] == HeadersTooLong(start + 1 * bodies.KiB)
    assert scanned - size <= start + 1 * bodies.KiB  # reported in the chunk that passed it


def near_close_body(after: bytes) -> bytes:
    return bodies.multipart_body([bodies.FilePart("f", "x", b"a\r\n--" + bodies.B + b"-" + after)])


def test_a_chunk_s_last_near_close_in_a_body_is_marked() -> None:
    body = near_close_body(b"xyz")
    end = body.index(b"\r\n--" + bodies.B + b"-x") + len(b"\r\n--" + bodies.B + b"-")
    for cut in range(end + 1, len(body) - len(bodies.CLOSING + b"\r\n\r\n")):
        framing = Framing(bodies.B, max_header_bytes=1 * bodies.KiB)
        assert framing.scan(body[:cut])[-1] == NearClose(end), f"cut at {cut}"


def test_a_near_close_is_not_marked_where_nothing_follows_it_or_a_delimiter_does() -> None:
    body = near_close_body(b"xyz")
    end = body.index(b"\r\n--" + bodies.B + b"-x") + len(b"\r\n--" + bodies.B + b"-")
    framing = Framing(bodies.B, max_header_bytes=1 * bodies.KiB)

    assert framing.scan(body[:end]) == [Delimiter(len(bodies.BOUNDARY_LINE), None, closing=False)]
    assert (
        framing.scan(body[end:])
        == layout([bodies.FilePart("f", "x", b"a\r\n--" + bodies.B + b"-xyz")])[1:]
    )


def test_only_the_last_near_close_of_a_chunk_is_marked() -> None:
    data = b"\r\n--" + bodies.B + b"-1" + b"\r\n--" + bodies.B + b"-2" + b"tail"
    body = bodies.multipart_body([bodies.FilePart("f", "x", data)])
    last = body.index(b"-2") + 1
    framing = Framing(bodies.B, max_header_bytes=1 * bodies.KiB)

    assert framing.scan(body[: body.index(b"tail") + 2])[1:] == [NearClose(last)]


def test_a_near_close_outside_a_body_is_not_marked() -> None:
    head = bodies.BOUNDARY_LINE + bodies.FORM_DATA + b"X: 1\r\n--" + bodies.B + b"-x\r\n"
    assert scan_all([head]) == [Delimiter(len(bodies.BOUNDARY_LINE), None, closing=False)]


def test_header_sections_are_kept_whole_at_every_split() -> None:
    """Each part's raw header lines, as MultipartStream reads names from them, wherever TCP
    splits the body (also inside the blank line that ends a section)."""
    parts: list[bodies.Part] = [
        bodies.FilePart("f", 'my "best" photo\\x.txt', b"\r\n\r\nbody\r\n", "text/plain"),
        bodies.FieldPart("note", "v"),
        bodies.FilePart("g", "😀.bin", b""),
    ]
    body = bodies.multipart_body(parts)
    heads = [bodies.part_head(part) for part in parts]
    expected = [
        HeaderSection(body.index(head) + len(head), head[len(bodies.BOUNDARY_LINE) : -4])
        for head in heads
    ]
    for size in (1, 2, 3, 5, 64, len(body)):
        for offset in range(min(size, 7)):
            framing = Framing(bodies.B, max_header_bytes=1 * bodies.KiB)
            for chunk in [body[:offset], *bodies.pieces(body[offset:], size)]:
                if chunk:
                    framing.scan(chunk)
            assert list(framing.sections) == expected, f"pieces of {size} after {offset}"


def test_a_section_over_the_limit_is_not_kept() -> None:
    body = bodies.multipart_body([bodies.FilePart("f", "x" * 2000, b"data")])
    framing = Framing(bodies.B, max_header_bytes=1 * bodies.KiB)
    for chunk in bodies.pieces(body, 100):
        framing.scan(chunk)
    assert framing.region is Region.DONE
    assert not framing.sections
