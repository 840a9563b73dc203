"""MultipartBody: the streamed body is as long as its Content-Length says, and the service's own
parser (app.forms.multipart.MultipartStream) reads back exactly the fields and files put in."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Iterable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.client.formbody import FileSizeChanged, FormField, FormFile, MultipartBody, quote
from app.forms.multipart import MultipartStream, PartEnd, PartStart


@dataclasses.dataclass
class Parsed:
    field: str
    filename: str | None
    content_type: str | None
    data: bytes


def parse(body: MultipartBody, data: bytes, piece: int = 7919) -> list[Parsed]:
    """Parse `data` as the service does, fed in pieces of `piece` bytes."""
    stream = MultipartStream({"content-type": body.content_type}, max_part_header_bytes=16384)
    parts: list[Parsed] = []
    current: PartStart | None = None
    buffer = bytearray()
    events = [e for at in range(0, len(data), piece) for e in stream.feed(data[at : at + piece])]
    events += stream.finish()
    for event in events:
        if isinstance(event, PartStart):
            current, buffer = event, bytearray()
        elif isinstance(event, PartEnd):
            assert current is not None
            parts.append(
                Parsed(current.field, current.filename, current.content_type, bytes(buffer))
            )
            current = None
        else:
            buffer += event
    return parts


def sized(data: bytes, size: int | None = None, step: int = 1000) -> Iterator[bytes]:
    del size
    for start in range(0, len(data), step):
        yield data[start : start + step]


def file(field: str, filename: str, data: bytes, *, known: bool = True, **kw: str) -> FormFile:
    return FormFile(field, filename, sized(data), len(data) if known else None, **kw)


def test_fields_and_files_round_trip_through_the_services_parser() -> None:
    big = bytes(range(256)) * 5000  # 1.2 MB, with CR, LF and boundary-like dashes inside
    body = MultipartBody(
        [FormField("title", "trip"), FormField("note", "ünïcode = ok\r\nsecond line")],
        [
            file("file", "video.mp4", big, content_type="video/mp4"),
            file("file", "empty.txt", b""),
            file("other", "--x--.bin", b"\r\n--" + body_boundary_lookalike()),
        ],
    )
    data = b"".join(body.chunks())
    assert body.content_length == len(data)
    assert body.headers() == {"Content-Type": body.content_type, "Content-Length": str(len(data))}
    assert parse(body, data) == [
        Parsed("title", None, None, b"trip"),
        Parsed("note", None, None, "ünïcode = ok\r\nsecond line".encode()),
        Parsed("file", "video.mp4", "video/mp4", big),
        Parsed("file", "empty.txt", "application/octet-stream", b""),
        Parsed(
            "other", "--x--.bin", "application/octet-stream", b"\r\n--" + body_boundary_lookalike()
        ),
    ]


def test_in_order_keeps_fields_and_files_interleaved() -> None:
    parts = [file("a", "1.bin", b"one"), FormField("t", "between"), file("a", "2.bin", b"two")]
    body = MultipartBody.in_order(parts, "b0und")
    data = b"".join(body.chunks())
    assert body.content_length == len(data)
    assert [(p.field, p.data) for p in parse(body, data)] == [
        ("a", b"one"),
        ("t", b"between"),
        ("a", b"two"),
    ]


def body_boundary_lookalike() -> bytes:
    return b"----streaming-upload-0000--\r\n"


def test_a_file_of_unknown_size_makes_a_body_without_content_length() -> None:
    body = MultipartBody([FormField("a", "1")], [file("file", "stdin", b"x" * 3000, known=False)])
    assert body.content_length is None
    assert "Content-Length" not in body.headers()
    data = b"".join(body.chunks())
    assert [p.data for p in parse(body, data)] == [b"1", b"x" * 3000]


def test_async_chunks_are_the_same_bytes() -> None:
    def make() -> MultipartBody:
        return MultipartBody([FormField("a", "1")], [file("f", "a.bin", b"y" * 5000)], "b0und")

    async def collect() -> bytes:
        return b"".join([chunk async for chunk in make().achunks()])

    assert asyncio.run(collect()) == b"".join(make().chunks())


def test_chunks_are_never_empty() -> None:
    def with_empties() -> Iterable[bytes]:
        yield b""
        yield b"abc"
        yield b""

    body = MultipartBody([], [FormFile("f", "a", with_empties(), 3)])
    assert all(body.chunks())


@pytest.mark.parametrize(("sent", "promised"), [(b"short", 10), (b"longer than promised", 6)])
def test_a_file_that_changed_size_stops_the_body(sent: bytes, promised: int) -> None:
    body = MultipartBody([], [FormFile("f", "a.bin", sized(sent, step=3), promised)])
    with pytest.raises(FileSizeChanged, match=r"a\.bin"):
        b"".join(body.chunks())


#: A value, and the Content-Disposition parameter value quote() makes of it: what Chromium
#: sends for a file of that name (tests/e2e/test_browser.py checks the service reads it back).
QUOTED = {
    "plain.txt": '"plain.txt"',
    'say "hi".txt': '"say %22hi%22.txt"',
    "back\\slash": '"back\\slash"',
    'my "best" photo\\x.txt': '"my %22best%22 photo\\x.txt"',
    "a\r\nContent-Type: text/html\r\n.txt": '"a%0D%0AContent-Type: text/html%0D%0A.txt"',
    "lone\rcr\nlf": '"lone%0Dcr%0Alf"',
    "100% sure %41.txt": '"100% sure %41.txt"',
    "ünïcödé €.txt": '"ünïcödé €.txt"',
    "😀 🎉.png": '"😀 🎉.png"',
    "semi;colon=x": '"semi;colon=x"',
    "": '""',
}


@pytest.mark.parametrize(("value", "quoted"), QUOTED.items())
def test_quote(value: str, quoted: str) -> None:
    assert quote(value) == quoted


def test_non_ascii_filenames_go_as_utf8() -> None:
    body = MultipartBody([], [file("f", "résumé €.pdf", b"%PDF")])
    head = b"".join(body.chunks())
    assert 'filename="résumé €.pdf"'.encode() in head


def test_a_content_type_cannot_inject_headers() -> None:
    body = MultipartBody([], [file("f", "a", b"z", content_type="text/plain\r\nX-Evil: 1")])
    # One header line, not two (the parser lowercases content types).
    assert parse(body, b"".join(body.chunks()))[0].content_type == "text/plainx-evil: 1"


names = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=40)


@settings(max_examples=150, deadline=None)
@given(
    fields=st.lists(st.tuples(names, st.text(max_size=50)), max_size=3),
    files=st.lists(st.tuples(names, names, st.binary(max_size=3000)), min_size=1, max_size=3),
    # From 3: see test_service_parser_fails_on_a_tiny_chunk_of_dashes_after_part_headers.
    piece=st.integers(min_value=3, max_value=4096),
)
def test_any_names_round_trip(
    fields: list[tuple[str, str]], files: list[tuple[str, str, bytes]], piece: int
) -> None:
    body = MultipartBody(
        [FormField(name, value) for name, value in fields],
        [file(field, filename, data) for field, filename, data in files],
    )
    data = b"".join(body.chunks())
    assert body.content_length == len(data)

    def read(text: str) -> str:
        """The name as the service reads it back: as it was, except that text which already
        looks like one of the three escapes is read as that escape (the HTML standard's
        encoding cannot tell them apart; docs/api.md, "Filenames")."""
        return re.sub("%(22|0D|0A)", lambda m: {"22": '"', "0D": "\r", "0A": "\n"}[m[1]], text)

    expected = [Parsed(read(n), None, None, v.encode()) for n, v in fields] + [
        Parsed(read(f), read(n), "application/octet-stream", d) for f, n, d in files
    ]
    parsed = parse(body, data, piece)
    # The service skips a part whose name is empty, as browsers never send one; everything
    # else must come back exactly.
    assert parsed == [p for p in expected if p.field]
