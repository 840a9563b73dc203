"""streaming-form-data's quirks (pinned against the raw library) and our MultipartStream wrapper.

The first half drives `StreamingFormDataParser` directly with a recording target: each test pins
one behaviour listed in the docstring of app/forms/multipart.py, so an upgrade of the library that
changes it fails here, with a message naming what to revisit. The second half checks that
`MultipartStream` turns any split of a body into the same events and rejects what it must.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Iterable, Sequence

import pytest
from streaming_form_data import StreamingFormDataParser
from streaming_form_data.parser import ParseFailedException
from streaming_form_data.targets import BaseTarget

from app.errors import MalformedMultipart, PartHeadersTooLarge, UnsupportedMediaType
from app.forms.multipart import Event, MultipartStream, PartEnd, PartStart
from tests.support import (
    BOUNDARY,
    FieldPart,
    FilePart,
    Part,
    content_type,
    multipart_body,
    part_head,
)

KiB = 1024
MiB = 1024 * KiB
B = BOUNDARY.encode()
DELIMITER = b"\r\n--" + B  # what the library looks for inside a part's body
BOUNDARY_LINE = f"--{BOUNDARY}\r\n".encode()
CLOSING = b"--" + B + b"--"  # the close delimiter, without its CRLFs
FORM_DATA = b'Content-Disposition: form-data; name="a"; filename="a.txt"\r\n'
WORKAROUND_GONE = (
    "the workaround in MultipartStream.feed (feeding the parser only up to the end of the "
    "closing boundary) can then be removed, with this pin"
)


# --------------------------------------------------------------------------------------------
# Pins of the raw library
# --------------------------------------------------------------------------------------------


class Recorder(BaseTarget):  # type: ignore[misc]
    """Records every call the parser makes on a target, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[object, ...]] = []

    def matches(self, registered: str, name: str) -> bool:
        self.calls.append(("matches", registered, name))
        return True

    def set_multipart_filename(self, filename: str | None) -> None:
        super().set_multipart_filename(filename)
        self.calls.append(("filename", filename))

    def set_multipart_content_type(self, content_type: str | None) -> None:
        super().set_multipart_content_type(content_type)
        self.calls.append(("content_type", content_type))

    def on_start(self) -> None:
        # What the target holds as content type when the part starts.
        self.calls.append(("start", self.multipart_content_type))

    def on_data_received(self, chunk: bytes) -> None:
        self.calls.append(("data", chunk))

    def on_finish(self) -> None:
        self.calls.append(("finish",))

    def names(self) -> list[object]:
        return [call[0] for call in self.calls]

    def count(self, name: str) -> int:
        return self.names().count(name)

    def data(self) -> bytes:
        return b"".join(c[1] for c in self.calls if c[0] == "data" and isinstance(c[1], bytes))


def raw_parser(boundary: str = BOUNDARY) -> tuple[StreamingFormDataParser, Recorder]:
    """The library's parser with one catch-all target, registered as MultipartStream does."""
    parser = StreamingFormDataParser({"content-type": content_type(boundary)})
    target = Recorder()
    parser.register("*", target, target.matches)
    return parser, target


def three_parts() -> list[Part]:
    return [
        FilePart("first", "a.txt", b"alpha", "text/plain"),
        FieldPart("note", "hello"),
        FilePart("second", "b.png", b"\x89PNG\r\n", "image/png"),
    ]


def test_pin_catch_all_matches_receives_every_part_with_real_names() -> None:
    parts: list[Part] = [
        FilePart("file", "a.txt", b"one"),
        FieldPart("file", "same name again"),
        FieldPart("caf\u00e9", "unicode name"),
        FilePart("other", "b.bin", b""),
    ]
    parser, target = raw_parser()

    parser.data_received(multipart_body(parts))

    expected: list[tuple[object, ...]] = []
    for part in parts:
        name = part.field if isinstance(part, FilePart) else part.name
        filename = part.filename if isinstance(part, FilePart) else None
        expected += [("matches", "*", name), ("filename", filename), ("start",)]
    got = [call[:1] if call[0] == "start" else call for call in target.calls]
    got = [call for call in got if call[0] in ("matches", "filename", "start")]
    assert got == expected, (
        "streaming-form-data no longer calls `matches(registered, real_name)` once per part, "
        "just before the part starts: _RecordingTarget takes the field name from that call"
    )
    assert target.count("finish") == len(parts)


def test_pin_content_type_arrives_after_on_start_and_is_not_cleared() -> None:
    parser, target = raw_parser()

    parser.data_received(multipart_body(three_parts()))

    headers = [c for c in target.calls if c[0] in ("start", "content_type", "finish")]
    assert headers == [
        ("start", None),  # the first part starts before its Content-Type is read
        ("content_type", "text/plain"),
        ("finish",),
        ("start", "text/plain"),  # the text field starts with the previous part's type...
        ("finish",),  # ...and has no Content-Type of its own, so nothing resets it
        ("start", "text/plain"),
        ("content_type", "image/png"),
        ("finish",),
    ], (
        "streaming-form-data changed when a part's Content-Type reaches the target (it used to "
        "arrive after on_start and never be cleared): revisit _RecordingTarget and PartStart"
    )


def test_pin_content_type_before_disposition_is_dropped() -> None:
    """Not in the module docstring: a Content-Type line above Content-Disposition is lost."""
    body = (
        BOUNDARY_LINE
        + b"Content-Type: text/plain\r\n"
        + FORM_DATA
        + b"\r\nhello\r\n"
        + CLOSING
        + b"\r\n"
    )
    parser, target = raw_parser()

    parser.data_received(body)

    assert target.count("content_type") == 0, (
        "streaming-form-data now reports a Content-Type that precedes Content-Disposition, "
        "before on_start: MultipartStream may now see it before the part starts"
    )
    assert target.data() == b"hello"


@pytest.mark.parametrize(
    "headers",
    [
        b"Content-Type: text/plain\r\n",
        b'Content-Disposition: form-data; filename="x.txt"\r\nContent-Type: text/plain\r\n',
        b'Content-Disposition: form-data; name=""; filename="x.txt"\r\n',
        b"Content-Disposition: form-data\r\n",
    ],
    ids=["content-type-only", "no-name", "empty-name", "bare-form-data"],
)
@pytest.mark.parametrize("position", ["first", "between"])
def test_pin_part_without_disposition_or_name_is_skipped(headers: bytes, position: str) -> None:
    anonymous = BOUNDARY_LINE + headers + b"\r\nskipped bytes\r\n"
    named = [FieldPart("before", "1"), FieldPart("after", "2")]
    body = multipart_body(named)
    if position == "first":
        body = anonymous + body
    else:
        split = len(part_head(named[0])) + len(b"1\r\n")
        body = body[:split] + anonymous + body[split:]
    parser, target = raw_parser()
    reference, expected = raw_parser()

    parser.data_received(body)
    reference.data_received(multipart_body(named))

    assert target.calls == expected.calls, (
        "streaming-form-data now reports a part without Content-Disposition or without a name "
        "(it used to skip it without any callback): MultipartStream must decide what to do"
    )


def test_pin_part_with_empty_header_section() -> None:
    """Not in the docstring: a part with no header lines at all ("--B CRLF CRLF body").

    After a delimiter the library processes the first byte twice, so a CR there (an empty header
    section) breaks the header parser. As the first part, the body is read as header lines.
    """
    named = [FieldPart("before", "1"), FieldPart("after", "2")]
    anonymous = BOUNDARY_LINE + b"\r\nskipped bytes\r\n"
    parser, target = raw_parser()
    reference, expected = raw_parser()

    parser.data_received(anonymous + multipart_body(named))
    reference.data_received(multipart_body(named))
    assert target.calls == expected.calls, "an empty header section as first part changed"

    split = len(part_head(named[0])) + len(b"1\r\n")
    parser, target = raw_parser()
    body = multipart_body(named)
    with pytest.raises(ParseFailedException):
        parser.data_received(body[:split] + anonymous + body[split:])
    assert target.names() == ["matches", "filename", "start", "data", "finish"], (
        "streaming-form-data changed how it treats a later part with no header lines"
    )


@pytest.mark.parametrize(
    "body",
    [
        BOUNDARY_LINE + b'Content-Disposition: form-data; name="caf\xe9"\r\n\r\nx\r\n',
        BOUNDARY_LINE + FORM_DATA + b"X-Note: \xff\xfe\r\n\r\nx\r\n",
        BOUNDARY_LINE + FORM_DATA + b"Content-Type: text/\xc3\r\n\r\nx\r\n",
    ],
    ids=["in-disposition", "in-other-header", "truncated-sequence"],
)
def test_pin_non_utf8_header_raises_unicode_decode_error(body: bytes) -> None:
    parser, _ = raw_parser()

    try:
        parser.data_received(body + CLOSING + b"\r\n")
    except UnicodeDecodeError:
        pass
    except Exception as exc:
        pytest.fail(
            f"streaming-form-data now raises {type(exc).__name__} (not UnicodeDecodeError) for "
            "non-UTF-8 part headers: MultipartStream._feed maps UnicodeDecodeError separately"
        )
    else:
        pytest.fail("streaming-form-data now accepts non-UTF-8 part headers silently")


@pytest.mark.parametrize(
    "bad",
    [
        b"Content-Disposition: attachment\r\n\r\nx\r\n",
        b"X-Note: a\rb\r\n\r\nx\r\n",  # CR without LF inside the header section
        b"\r\rx\r\n",  # CR without LF where the blank line ends the headers
    ],
    ids=["second-disposition-attachment", "bare-cr-in-header", "bare-cr-after-headers"],
)
def test_pin_on_finish_runs_before_parse_failed(bad: bytes) -> None:
    """The part started at its Content-Disposition, then its header section turns out bad."""
    parser, target = raw_parser()

    with pytest.raises(ParseFailedException):
        parser.data_received(BOUNDARY_LINE + FORM_DATA + bad + CLOSING + b"\r\n")

    assert target.names()[:3] == ["matches", "filename", "start"]
    assert target.count("finish") >= 1, (
        "streaming-form-data no longer calls on_finish for the open part when parsing fails: "
        "the module docstring of app/forms/multipart.py is out of date"
    )
    assert set(target.names()[3:]) == {"finish"}


def test_pin_on_finish_runs_twice_on_parse_error() -> None:
    """Not in the docstring: mark_error() and the error handler both finish the open part.

    Harmless for MultipartStream, which drops the events of a feed that raised.
    """
    parser, target = raw_parser()

    with pytest.raises(ParseFailedException):
        parser.data_received(
            BOUNDARY_LINE + FORM_DATA + b"Content-Disposition: attachment\r\n\r\nx\r\n"
        )

    assert target.count("finish") == 2, (
        f"streaming-form-data now calls on_finish {target.count('finish')} times on a parse "
        "error in an open part (it was 2); update this pin"
    )


def test_pin_body_without_closing_boundary_raises_nothing() -> None:
    """Every prefix of a valid body is accepted without complaint: no 'unfinished' error."""
    body = multipart_body(three_parts())
    end = len(body) - len(b"\r\n")  # where the closing boundary ends

    for cut in range(1, end):
        parser, target = raw_parser()
        try:
            parser.data_received(body[:cut])
        except Exception as exc:
            pytest.fail(
                f"streaming-form-data now raises {exc!r} for a body cut at {cut}: "
                "MultipartStream.finish may be able to rely on it"
            )
        assert target.count("finish") < len(three_parts()), f"cut at {cut}"


# More than two bytes after the close delimiter, in the same data_received call. The body's own
# CRLF after the delimiter counts, so one byte after a browser's body is enough.
LONG_TAILS = [b"\r\nx", b"abc", b"\r\n\r\n", b"\r\n--\r\n", b"\r\n" + b"e" * 5000]
SHORT_TAILS = [b"", b"\r", b"\r\n", b"ab"]


@pytest.mark.parametrize("tail", LONG_TAILS, ids=lambda t: f"{len(t)}-bytes")
@pytest.mark.parametrize("size", [5, 5000], ids=["small-part", "large-part"])
def test_pin_epilogue_in_same_call_leaves_last_part_open(tail: bytes, size: int) -> None:
    data = bytes(range(251)) * (size // 251) + b"z" * (size % 251)
    parts: list[Part] = [FieldPart("note", "hi"), FilePart("file", "a.bin", data)]
    body = multipart_body(parts)
    assert body.endswith(CLOSING + b"\r\n")
    parser, target = raw_parser()

    parser.data_received(body[: -len(b"\r\n")] + tail)

    assert target.count("start") == 2
    assert target.count("finish") == 1, (
        "streaming-form-data fixed its epilogue bug: the last part now ends when more than two "
        "bytes follow the closing boundary in the same data_received call; " + WORKAROUND_GONE
    )
    assert target.data() != b"hi" + data  # the last part lost or gained bytes


def test_pin_missed_closing_boundary_leaks_into_the_part() -> None:
    """With a second closing boundary in the epilogue, the first one becomes file data."""
    parts: list[Part] = [FieldPart("note", "hi"), FilePart("file", "a.bin", b"hello")]
    parser, target = raw_parser()

    parser.data_received(multipart_body(parts) + CLOSING + b"\r\n")

    assert target.count("finish") == 2
    assert target.data() == b"hi" + b"hello" + b"\r\n" + CLOSING, (
        "streaming-form-data no longer leaks a closing boundary followed by an epilogue into "
        "the last part; " + WORKAROUND_GONE
    )


@pytest.mark.parametrize("tail", SHORT_TAILS, ids=lambda t: f"{len(t)}-bytes")
def test_pin_up_to_two_bytes_after_closing_boundary_are_fine(tail: bytes) -> None:
    parts = three_parts()
    parser, target = raw_parser()

    parser.data_received(multipart_body(parts)[: -len(b"\r\n")] + tail)

    assert target.count("finish") == len(parts)
    assert target.data() == b"alphahello\x89PNG\r\n"


@pytest.mark.parametrize("tail", LONG_TAILS, ids=lambda t: f"{len(t)}-bytes")
def test_pin_epilogue_in_separate_call_is_fine(tail: bytes) -> None:
    parts = three_parts()
    parser, target = raw_parser()

    parser.data_received(multipart_body(parts)[: -len(b"\r\n")])
    parser.data_received(tail)

    assert target.count("finish") == len(parts)
    assert target.data() == b"alphahello\x89PNG\r\n"


def tiny_dash_chunks(dashes: bytes) -> tuple[str, list[bytes]]:
    """A valid body split so that `dashes` alone arrives right after a second part's headers."""
    data = multipart_body([FieldPart("a", "v"), FilePart("f", "x", dashes + b"rest")])
    head_end = data.index(b"\r\n\r\n", data.index(b'filename="x"')) + 4
    return content_type(), [data[:head_end], dashes, data[head_end + len(dashes) :]]


@pytest.mark.parametrize("dashes", [b"-", b"--"])
def test_pin_tiny_chunk_of_dashes_after_part_headers_fails(dashes: bytes) -> None:
    """Upstream bug (found by tests/unit/test_formbody.py's property test): a chunk of just
    `-` or `--` right after the headers of a part other than the first fails a valid body.
    When this pin fails, upstream fixed it and MultipartStream's _min_feed can go."""
    parser, _ = raw_parser()
    _, chunks = tiny_dash_chunks(dashes)
    with pytest.raises(ParseFailedException):
        for chunk in chunks:
            parser.data_received(chunk)


def test_pin_unending_header_line_is_buffered_without_limit() -> None:
    parser, target = raw_parser()

    parser.data_received(BOUNDARY_LINE + FORM_DATA + b"X-Long: ")
    for _ in range(256):
        parser.data_received(b"a" * KiB)

    assert target.names() == ["matches", "filename", "start"], (
        "streaming-form-data now reacts to an endless part header line: "
        "MultipartStream's PartHeadersTooLarge bound may be redundant"
    )


# --------------------------------------------------------------------------------------------
# MultipartStream
# --------------------------------------------------------------------------------------------

Collected = tuple[str, str | None, str | None, bytes]


def new_stream(boundary: str = BOUNDARY, max_part_header_bytes: int = 16 * KiB) -> MultipartStream:
    return MultipartStream(
        {"content-type": content_type(boundary)}, max_part_header_bytes=max_part_header_bytes
    )


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[start : start + size] for start in range(0, len(data), size)]


def feed_all(stream: MultipartStream, chunks: Iterable[bytes]) -> list[Event]:
    events: list[Event] = []
    for chunk in chunks:
        events.extend(stream.feed(chunk))
    return events


def collect(events: Sequence[Event]) -> list[Collected]:
    """(field, filename, content type, bytes) per part; fails on a badly ordered event list.

    The content type is read after feeding is done, as PartStart documents it.
    """
    out: list[Collected] = []
    current: PartStart | None = None
    data = bytearray()
    for event in events:
        if isinstance(event, PartStart):
            assert current is None, f"{event} before the previous part ended"
            current, data = event, bytearray()
        elif isinstance(event, PartEnd):
            assert current is not None, "PartEnd without a part"
            out.append((current.field, current.filename, current.content_type, bytes(data)))
            current = None
        else:
            assert isinstance(event, bytes) and event, f"unexpected event {event!r}"
            assert current is not None, "bytes outside a part"
            data += event
    assert current is None, f"{current} never ended"
    return out


def expected_of(parts: Sequence[Part]) -> list[Collected]:
    return [
        (p.field, p.filename, p.content_type, p.data)
        if isinstance(p, FilePart)
        else (p.name, None, None, p.value.encode())
        for p in parts
    ]


SMALL_PARTS: list[Part] = [
    FilePart("doc", "notes.txt", b"line one\r\n--" + B[:12] + b"\r\n-\r", "text/plain"),
    FieldPart("title", "two\r\nlines --"),
    FilePart("blob", "b.bin", b"\r\n--" + B + b"x\x00\xff\r\n\r\n--", "application/x-thing"),
]
SMALL_BODY = multipart_body(SMALL_PARTS)


def test_small_body_in_one_chunk() -> None:
    stream = new_stream()
    events = stream.feed(SMALL_BODY)
    events += stream.finish()

    assert collect(events) == expected_of(SMALL_PARTS)
    assert stream.ended


def test_small_body_split_at_every_point() -> None:
    expected = expected_of(SMALL_PARTS)
    for at in range(len(SMALL_BODY) + 1):
        stream = new_stream()
        events = feed_all(stream, [SMALL_BODY[:at], SMALL_BODY[at:]])
        events += stream.finish()
        assert collect(events) == expected, f"split at {at}"
        assert stream.ended, f"split at {at}"


def test_small_body_byte_by_byte() -> None:
    stream = new_stream()
    events = feed_all(stream, pieces(SMALL_BODY, 1))
    events += stream.finish()

    assert collect(events) == expected_of(SMALL_PARTS)
    assert stream.ended


EPILOGUES = {
    "few-bytes": b"xyz",
    "crlf-heavy": b"\r\n\r\n\r\n\r\n\r",
    "another-closing": b"\r\n" + CLOSING + b"\r\n" + CLOSING + b"\r\n",
    "bad-part": b"\r\n" + BOUNDARY_LINE + b"Content-Disposition: attachment\r\n\xff\r\n\r\n",
    "huge": b"\r\n-\r\n--" * (MiB // 6),
}


@pytest.mark.parametrize("epilogue", EPILOGUES.values(), ids=EPILOGUES.keys())
@pytest.mark.parametrize("crlf", [True, False], ids=["crlf", "no-crlf"])
def test_epilogue_is_ignored_at_every_split(epilogue: bytes, crlf: bool) -> None:
    parts: list[Part] = [FilePart("file", "a.bin", b"\r\n-payload-\r\n" * 100)]
    body = multipart_body(parts)[: -len(b"\r\n")] + (b"\r\n" if crlf else b"")
    full = body + epilogue
    closing_starts = len(body) - len(b"\r\n" + CLOSING) - (2 if crlf else 0)
    for at in range(closing_starts - 1, len(body) + 4):
        stream = new_stream()
        events = feed_all(stream, [full[:at], *pieces(full[at:], 64 * KiB)])
        events += stream.finish()
        assert collect(events) == expected_of(parts), f"split at {at}"
        assert stream.ended, f"split at {at}"


def test_epilogue_byte_by_byte() -> None:
    stream = new_stream()
    events = feed_all(stream, pieces(SMALL_BODY + EPILOGUES["another-closing"], 1))
    events += stream.finish()

    assert collect(events) == expected_of(SMALL_PARTS)
    assert stream.ended


def test_feed_after_end_returns_nothing() -> None:
    stream = new_stream()
    stream.feed(SMALL_BODY)

    assert stream.ended
    assert stream.feed(b"garbage that would not parse \xff") == []
    stream.finish()


def test_body_cut_before_closing_boundary_ends_is_malformed() -> None:
    parts: list[Part] = [FilePart("f", "a.txt", b"ab\r\n-", "text/plain"), FieldPart("n", "v")]
    body = multipart_body(parts)
    closing_ends = len(body) - len(b"\r\n")
    for cut in range(closing_ends):
        for chunks in ([body[:cut]], pieces(body[:cut], 1)):
            stream = new_stream()
            feed_all(stream, chunks)  # a prefix of a valid body is not malformed yet
            with pytest.raises(MalformedMultipart):
                stream.finish()
            assert not stream.ended, f"cut at {cut}"


@pytest.mark.parametrize("cut", [0, 1, 2], ids=["no-crlf", "cr-only", "crlf"])
def test_body_ending_at_closing_boundary_is_complete(cut: int) -> None:
    body = multipart_body(SMALL_PARTS)[: len(SMALL_BODY) - 2 + cut]
    stream = new_stream()
    events = feed_all(stream, pieces(body, 1))
    events += stream.finish()

    assert collect(events) == expected_of(SMALL_PARTS)
    assert stream.ended


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"content-type": ""},
        {"content-type": "text/plain"},
        {"content-type": "application/json"},
        {"content-type": "application/x-www-form-urlencoded"},
        {"content-type": "multipart/mixed; boundary=abc"},
        {"content-type": "multipart/form-data-ish; boundary=abc"},
        {"content-type": "form-data; boundary=abc"},
    ],
    ids=lambda h: repr(h.get("content-type")),
)
def test_not_form_data_is_unsupported_media_type(headers: dict[str, str]) -> None:
    with pytest.raises(UnsupportedMediaType):
        MultipartStream(headers, max_part_header_bytes=16 * KiB)


@pytest.mark.parametrize(
    "value",
    [
        "multipart/form-data",
        "multipart/form-data;",
        "multipart/form-data; boundary=",
        'multipart/form-data; boundary=""',
        "multipart/form-data; charset=utf-8",
        "multipart/form-data; boundary=" + "b" * 71,
        'multipart/form-data; boundary="' + "b" * 71 + '"',
    ],
    ids=["none", "semicolon", "empty", "empty-quoted", "other-param", "71", "71-quoted"],
)
def test_bad_boundary_is_malformed(value: str) -> None:
    with pytest.raises(MalformedMultipart):
        MultipartStream({"content-type": value}, max_part_header_bytes=16 * KiB)


@pytest.mark.parametrize(
    "value",
    [
        content_type("b" * 70),
        "Multipart/Form-Data; boundary=" + "b" * 70,
        'multipart/form-data; boundary="' + "b" * 70 + '"',
        'multipart/form-data; charset=utf-8; boundary="' + "b" * 70 + '"',
    ],
    ids=["plain", "mixed-case-type", "quoted", "after-other-param"],
)
def test_seventy_character_boundary_is_accepted(value: str) -> None:
    boundary = "b" * 70
    stream = MultipartStream({"content-type": value}, max_part_header_bytes=16 * KiB)
    events = feed_all(stream, pieces(multipart_body(SMALL_PARTS, boundary), 5))
    events += stream.finish()

    assert collect(events) == expected_of(SMALL_PARTS)


BAD_BODIES = {
    "garbage": b"this is not a multipart body at all\r\n",
    "wrong-boundary": multipart_body(SMALL_PARTS, "some-other-boundary"),
    "boundary-prefix": multipart_body(SMALL_PARTS, BOUNDARY[:-1]),
    "non-utf8-disposition": (
        BOUNDARY_LINE + b'Content-Disposition: form-data; name="caf\xe9"\r\n\r\nx\r\n' + CLOSING
    ),
    "non-utf8-header": BOUNDARY_LINE + FORM_DATA + b"X-Note: \xff\r\n\r\nx\r\n" + CLOSING,
    "attachment": (
        BOUNDARY_LINE + b'Content-Disposition: attachment; filename="a"\r\n\r\nx\r\n' + CLOSING
    ),
    "attachment-second-part": (
        SMALL_BODY[: -len(CLOSING + b"\r\n")]
        + BOUNDARY_LINE
        + b"Content-Disposition: attachment\r\n\r\nx\r\n"
        + CLOSING
    ),
    "bare-cr-in-header": BOUNDARY_LINE + FORM_DATA + b"X-Note: a\rb\r\n\r\nx\r\n" + CLOSING,
}


@pytest.mark.parametrize("body", BAD_BODIES.values(), ids=BAD_BODIES.keys())
@pytest.mark.parametrize("size", [1, 7, 1 << 20], ids=["bytes", "7-bytes", "whole"])
def test_malformed_body_raises_from_feed(body: bytes, size: int) -> None:
    stream = new_stream()

    with pytest.raises(MalformedMultipart):
        feed_all(stream, pieces(body + b"\r\n", size))
    assert not stream.ended


UNENDING = {
    "boundary-line": b"--" + B,
    "disposition-line": b"--" + B + b'\r\nContent-Disposition: form-data; name="',
    "later-header-line": BOUNDARY_LINE + FORM_DATA + b"X-Long: ",
    "after-a-part": SMALL_BODY[: -len(CLOSING + b"\r\n")] + BOUNDARY_LINE + FORM_DATA + b"X: ",
}


@pytest.mark.parametrize("head", UNENDING.values(), ids=UNENDING.keys())
@pytest.mark.parametrize("limit", [1 * KiB, 16 * KiB])
@pytest.mark.parametrize("size", [1, 1000, KiB])
def test_unending_header_line_is_too_large(head: bytes, limit: int, size: int) -> None:
    bound = limit + 4 * KiB + 2 * len(BOUNDARY_LINE)
    body = head + b"a" * (100 * KiB)
    stream = new_stream(max_part_header_bytes=limit)
    fed = 0

    with pytest.raises(PartHeadersTooLarge):
        for chunk in pieces(body, size):
            fed += len(chunk)
            stream.feed(chunk)
    assert fed <= bound, f"fed {fed} bytes before PartHeadersTooLarge (bound {bound})"


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


# (chunk size, file size): 2 MiB where it is quick, fewer bytes for the tiniest chunks.
HUGE_FEEDS = [(1, 64 * KiB), (7, 512 * KiB), (64, 2 * MiB), (1000, 2 * MiB), (KiB, 2 * MiB)]
HUGE_FEEDS += [(KiB + 1, 2 * MiB), (4 * KiB, 2 * MiB), (64 * KiB, 2 * MiB)]


@pytest.mark.parametrize(("size", "file_size"), HUGE_FEEDS, ids=[str(s) for s, _ in HUGE_FEEDS])
def test_huge_tricky_file_body_is_not_a_header(size: int, file_size: int) -> None:
    """At the smallest allowed header limit, a file body never looks like a stalled header."""
    parts: list[Part] = [
        FilePart("file", "big.bin", tricky_bytes(file_size)),
        FieldPart("after", "x"),
    ]
    stream = new_stream(max_part_header_bytes=1 * KiB)

    events = feed_all(stream, pieces(multipart_body(parts), size))
    events += stream.finish()

    assert collect(events) == expected_of(parts)


@pytest.mark.parametrize("size", [1, 100, KiB, 4 * KiB])
@pytest.mark.parametrize("limit", [1 * KiB, 16 * KiB])
def test_header_section_at_the_limit_is_accepted(size: int, limit: int) -> None:
    """A header section of exactly max_part_header_bytes, then a body held back by the parser."""
    head = BOUNDARY_LINE + FORM_DATA + b"Content-Type: text/plain\r\n"
    filler = limit - (len(head) - len(BOUNDARY_LINE)) - len(b"X-Pad: \r\n\r\n")
    head += b"X-Pad: " + b"p" * filler + b"\r\n\r\n"
    assert len(head) - len(BOUNDARY_LINE) == limit
    data = tricky_bytes(8 * KiB)
    body = head + data + b"\r\n" + CLOSING + b"\r\n"
    stream = new_stream(max_part_header_bytes=limit)

    events = feed_all(stream, pieces(body, size))
    events += stream.finish()

    assert collect(events) == [("a", "a.txt", "text/plain", data)]


def outcome(chunks: Iterable[bytes]) -> tuple[str, object]:
    """What MultipartStream makes of a body: its parts, or the name of the error it raised."""
    stream = new_stream()
    try:
        events = feed_all(stream, chunks)
        events += stream.finish()
    except (MalformedMultipart, PartHeadersTooLarge) as exc:
        return ("error", type(exc).__name__)
    return ("parts", collect(events))


ANONYMOUS_HEADERS = {
    "no-name": b'Content-Disposition: form-data; filename="x.bin"\r\n',
    "empty-name": b'Content-Disposition: form-data; name=""; filename="x.bin"\r\n',
    "no-disposition": b"Content-Type: application/octet-stream\r\n",
}


@pytest.mark.parametrize("headers", ANONYMOUS_HEADERS.values(), ids=ANONYMOUS_HEADERS.keys())
def test_large_skipped_part_gives_the_same_outcome_however_split(headers: bytes) -> None:
    """The library skips a part without a name; its body is not a header section.

    However the body is split, the result must be the one for a single chunk, and never
    PartHeadersTooLarge: this part's header section is a few dozen bytes.
    """
    named = multipart_body([FieldPart("n", "v")])
    body = BOUNDARY_LINE + headers + b"\r\n" + tricky_bytes(100 * KiB) + b"\r\n" + named
    whole = outcome([body])

    for size in (KiB, 16 * KiB, 64 * KiB):
        assert outcome(pieces(body, size)) == whole, f"fed in {size}-byte chunks"
    assert whole != ("error", "PartHeadersTooLarge")


@pytest.mark.parametrize("dashes", [b"-", b"--"])
def test_tiny_chunk_of_dashes_after_part_headers_parses(dashes: bytes) -> None:
    _, chunks = tiny_dash_chunks(dashes)
    stream = new_stream()
    events = feed_all(stream, chunks)
    events += stream.finish()

    file_type = "application/octet-stream"  # multipart_body gives a FilePart this type
    assert collect(events) == [("a", None, None, b"v"), ("f", "x", file_type, dashes + b"rest")]


@pytest.mark.parametrize("size", [1, 2, 3])
def test_dash_heavy_bodies_in_tiny_chunks(size: int) -> None:
    parts: list[Part] = [
        FieldPart("a", "-"),
        FilePart("b", "b.bin", b"-"),
        FilePart("c", "c.bin", b"--"),
        FilePart("d", "d.bin", b"--" + B + b"-\r\n-"),
        FieldPart("e", "--"),
    ]
    stream = new_stream()
    events = feed_all(stream, pieces(multipart_body(parts), size))
    events += stream.finish()

    assert collect(events) == expected_of(parts)
    assert stream.ended


def test_boundary_prefixes_at_part_starts_in_random_tiny_chunks() -> None:
    """Part bodies that begin with a prefix of the delimiter, cut into many random chunks:
    without the minimum feed, about one body in nine failed here (seeded, so repeatable)."""
    rng = random.Random(5)
    delimiter = b"--" + B
    for trial in range(600):
        parts: list[Part] = []
        for i in range(rng.randint(1, 4)):
            filler = rng.choice([b"", b"-", b"\r\n", b"x", b"\r\n-", b"--"]) * rng.randint(0, 3)
            data = delimiter[: rng.randint(0, len(delimiter) + 3)] + filler
            if rng.random() < 0.5:
                parts.append(FilePart(f"f{i}", f"x{i}", data))
            else:
                parts.append(FieldPart(f"n{i}", data.decode()))
        body = multipart_body(parts)
        cuts = sorted(rng.sample(range(1, len(body)), min(len(body) - 1, rng.randint(1, 60))))
        stream = new_stream()
        bounds = zip([0, *cuts], [*cuts, len(body)], strict=True)
        events = feed_all(stream, [body[a:b] for a, b in bounds])
        events += stream.finish()
        assert collect(events) == expected_of(parts), f"trial {trial}"


def test_a_part_that_starts_inside_another_is_refused() -> None:
    """Found by tests/fuzz (atheris): a bare LF inside a quoted name makes the library start
    a part that never ends, then start the next one. Refused, in one piece or in chunks."""
    body = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="a\x01\x00\n\r\nv\r\n'
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="f$; filename="x.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
        f"--{BOUNDARY}-\r\n--{BOUNDARY}--\r\n"
    ).encode()
    for size in (len(body), 7, 1):
        stream = new_stream()
        with pytest.raises(MalformedMultipart, match="headers are broken"):
            feed_all(stream, pieces(body, size))
            stream.finish()


def test_an_end_reached_without_the_closing_delimiter_is_refused() -> None:
    """Found by tests/fuzz (atheris): fed in 7-byte chunks, this body with no closing
    delimiter drove the library into its end state, and the part was cut short. Only a
    closing delimiter seen in the bytes ends a body now, in any chunking."""
    b = "fuzz-boundary"
    body = (
        f'--{b}\r\nContent-Disposition: form-data; name="a"\r\n\r\nv\r\n--fuzzfuzz-boundary\r\n'
        f'Conent-Ty-boundary\r\nContent-Disposition: form-data; name="f"; filename="x.bin"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n--{b}-\r\na-{b}--\r\n"
    ).encode()
    for size in (len(body), 7, 4, 1):
        stream = new_stream(b)
        with pytest.raises(MalformedMultipart):
            feed_all(stream, pieces(body, size))
            stream.finish()


def test_closing_delimiter_bytes_at_a_part_start_are_data() -> None:
    """`--boundary--` right after a part's headers follows their blank line's CR LF, so it
    looks like a closing delimiter to a byte scan; the real one comes later."""
    parts: list[Part] = [FilePart("f", "x", b"--" + B + b"----")]
    body = multipart_body(parts)
    for size in range(1, 60):
        stream = new_stream()
        events = feed_all(stream, pieces(body, size))
        events += stream.finish()
        assert collect(events) == expected_of(parts), f"chunks of {size}"
