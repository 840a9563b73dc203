"""streaming-form-data's own behaviour, pinned against the raw library.

Each test drives `StreamingFormDataParser` directly with a recording target and pins one
behaviour listed in the docstring of app/forms/multipart.py (or noted in the test), so an
upgrade of the library that changes it fails here, with a message naming what to revisit.
"""

from __future__ import annotations

import pytest
from streaming_form_data import StreamingFormDataParser
from streaming_form_data.parser import ParseFailedException
from streaming_form_data.targets import BaseTarget

from tests.unit.forms import bodies

WORKAROUND_GONE = (
    "MultipartStream's calls to the parser may then go past the close delimiter (and Framing's "
    "NearClose may be unneeded): revisit them, with this pin"
)


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


def raw_parser(boundary: str = bodies.BOUNDARY) -> tuple[StreamingFormDataParser, Recorder]:
    """The library's parser with one catch-all target, registered as MultipartStream does."""
    parser = StreamingFormDataParser({"content-type": bodies.content_type(boundary)})
    target = Recorder()
    parser.register("*", target, target.matches)
    return parser, target


def three_parts() -> list[bodies.Part]:
    return [
        bodies.FilePart("first", "a.txt", b"alpha", "text/plain"),
        bodies.FieldPart("note", "hello"),
        bodies.FilePart("second", "b.png", b"\x89PNG\r\n", "image/png"),
    ]


def test_pin_catch_all_matches_receives_every_part_with_real_names() -> None:
    parts: list[bodies.Part] = [
        bodies.FilePart("file", "a.txt", b"one"),
        bodies.FieldPart("file", "same name again"),
        bodies.FieldPart("caf\u00e9", "unicode name"),
        bodies.FilePart("other", "b.bin", b""),
    ]
    parser, target = raw_parser()

    parser.data_received(bodies.multipart_body(parts))

    expected: list[tuple[object, ...]] = []
    for part in parts:
        name = part.field if isinstance(part, bodies.FilePart) else part.name
        filename = part.filename if isinstance(part, bodies.FilePart) else None
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

    parser.data_received(bodies.multipart_body(three_parts()))

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
        bodies.BOUNDARY_LINE
        + b"Content-Type: text/plain\r\n"
        + bodies.FORM_DATA
        + b"\r\nhello\r\n"
        + bodies.CLOSING
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
    anonymous = bodies.BOUNDARY_LINE + headers + b"\r\nskipped bytes\r\n"
    named = [bodies.FieldPart("before", "1"), bodies.FieldPart("after", "2")]
    body = bodies.multipart_body(named)
    if position == "first":
        body = anonymous + body
    else:
        split = len(bodies.part_head(named[0])) + len(b"1\r\n")
        body = body[:split] + anonymous + body[split:]
    parser, target = raw_parser()
    reference, expected = raw_parser()

    parser.data_received(body)
    reference.data_received(bodies.multipart_body(named))

    assert target.calls == expected.calls, (
        "streaming-form-data now reports a part without Content-Disposition or without a name "
        "(it used to skip it without any callback): MultipartStream must decide what to do"
    )


def test_pin_part_with_empty_header_section() -> None:
    """Not in the docstring: a part with no header lines at all ("--B CRLF CRLF body").

    After a delimiter the library processes the first byte twice, so a CR there (an empty header
    section) breaks the header parser. As the first part, the body is read as header lines.
    """
    named = [bodies.FieldPart("before", "1"), bodies.FieldPart("after", "2")]
    anonymous = bodies.BOUNDARY_LINE + b"\r\nskipped bytes\r\n"
    parser, target = raw_parser()
    reference, expected = raw_parser()

    parser.data_received(anonymous + bodies.multipart_body(named))
    reference.data_received(bodies.multipart_body(named))
    assert target.calls == expected.calls, "an empty header section as first part changed"

    split = len(bodies.part_head(named[0])) + len(b"1\r\n")
    parser, target = raw_parser()
    body = bodies.multipart_body(named)
    with pytest.raises(ParseFailedException):
        parser.data_received(body[:split] + anonymous + body[split:])
    assert target.names() == ["matches", "filename", "start", "data", "finish"], (
        "streaming-form-data changed how it treats a later part with no header lines"
    )


@pytest.mark.parametrize(
    "body",
    [
        bodies.BOUNDARY_LINE + b'Content-Disposition: form-data; name="caf\xe9"\r\n\r\nx\r\n',
        bodies.BOUNDARY_LINE + bodies.FORM_DATA + b"X-Note: \xff\xfe\r\n\r\nx\r\n",
        bodies.BOUNDARY_LINE + bodies.FORM_DATA + b"Content-Type: text/\xc3\r\n\r\nx\r\n",
    ],
    ids=["in-disposition", "in-other-header", "truncated-sequence"],
)
def test_pin_non_utf8_header_raises_unicode_decode_error(body: bytes) -> None:
    parser, _ = raw_parser()

    try:
        parser.data_received(body + bodies.CLOSING + b"\r\n")
    except UnicodeDecodeError:
        pass
    except Exception as exc:
        pytest.fail(
            f"streaming-form-data now raises {type(exc).__name__} (not UnicodeDecodeError) for "
            "non-UTF-8 part headers: MultipartStream._parse maps UnicodeDecodeError separately"
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
        parser.data_received(
            bodies.BOUNDARY_LINE + bodies.FORM_DATA + bad + bodies.CLOSING + b"\r\n"
        )

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
            bodies.BOUNDARY_LINE
            + bodies.FORM_DATA
            + b"Content-Disposition: attachment\r\n\r\nx\r\n"
        )

    assert target.count("finish") == 2, (
        f"streaming-form-data now calls on_finish {target.count('finish')} times on a parse "
        "error in an open part (it was 2); update this pin"
    )


def test_pin_body_without_closing_boundary_raises_nothing() -> None:
    """Every prefix of a valid body is accepted without complaint: no 'unfinished' error."""
    body = bodies.multipart_body(three_parts())
    end = len(body) - len(b"\r\n")  # where the closing boundary ends

    for cut in range(1, end):
        parser, target = raw_parser()
        try:
            parser.data_received(body[:cut])
        except Exception as exc:
            pytest.fail(
                f"streaming-form-data now raises {exc!r} for a body cut at {cut}: "
                "MultipartStream.finish may be able to rely on it rather than on Framing"
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
    parts: list[bodies.Part] = [
        bodies.FieldPart("note", "hi"),
        bodies.FilePart("file", "a.bin", data),
    ]
    body = bodies.multipart_body(parts)
    assert body.endswith(bodies.CLOSING + b"\r\n")
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
    parts: list[bodies.Part] = [
        bodies.FieldPart("note", "hi"),
        bodies.FilePart("file", "a.bin", b"hello"),
    ]
    parser, target = raw_parser()

    parser.data_received(bodies.multipart_body(parts) + bodies.CLOSING + b"\r\n")

    assert target.count("finish") == 2
    assert target.data() == b"hi" + b"hello" + b"\r\n" + bodies.CLOSING, (
        "streaming-form-data no longer leaks a closing boundary followed by an epilogue into "
        "the last part; " + WORKAROUND_GONE
    )


@pytest.mark.parametrize("tail", SHORT_TAILS, ids=lambda t: f"{len(t)}-bytes")
def test_pin_up_to_two_bytes_after_closing_boundary_are_fine(tail: bytes) -> None:
    parts = three_parts()
    parser, target = raw_parser()

    parser.data_received(bodies.multipart_body(parts)[: -len(b"\r\n")] + tail)

    assert target.count("finish") == len(parts)
    assert target.data() == b"alphahello\x89PNG\r\n"


@pytest.mark.parametrize("tail", LONG_TAILS, ids=lambda t: f"{len(t)}-bytes")
def test_pin_epilogue_in_separate_call_is_fine(tail: bytes) -> None:
    parts = three_parts()
    parser, target = raw_parser()

    parser.data_received(bodies.multipart_body(parts)[: -len(b"\r\n")])
    parser.data_received(tail)

    assert target.count("finish") == len(parts)
    assert target.data() == b"alphahello\x89PNG\r\n"


# A file holding a close delimiter but its last byte (`CRLF --B-`), then more than two bytes.
NEAR_CLOSE = b"x" * 50 + b"\r\n--" + bodies.B + b"-abcd"


@pytest.mark.parametrize(
    "rest", [b"-def" + b"y" * 50, b"--" + bodies.B + b"--tail"], ids=["dash", "dashes"]
)
def test_pin_close_is_invented_when_the_next_call_starts_with_a_dash(rest: bytes) -> None:
    """The search for the close delimiter stops after `CRLF --B-` until the end of the call;
    the next call's first `-` then completes a close delimiter that is not in the bytes."""
    data = NEAR_CLOSE + rest
    body = bodies.multipart_body([bodies.FilePart("f", "x", data), bodies.FieldPart("after", "z")])
    cut = body.index(NEAR_CLOSE) + len(NEAR_CLOSE)
    parser, target = raw_parser()

    parser.data_received(body[:cut])
    parser.data_received(body[cut:])

    assert target.count("start") == 1, (
        "streaming-form-data no longer invents a close delimiter from `CRLF --B-` in one call "
        "and `-` at the start of the next; " + WORKAROUND_GONE
    )
    assert target.data() != data  # the file was cut short


def test_pin_a_later_crlf_dashes_in_the_same_call_restarts_the_search() -> None:
    """After `CRLF --B-`, the search is right again from the next `CRLF --` in the same call,
    whatever comes next: Framing reports only a chunk's last `CRLF --B-` for that reason."""
    data = NEAR_CLOSE + b"\r\n--zz" + b"-def" + b"y" * 50
    body = bodies.multipart_body([bodies.FilePart("f", "x", data), bodies.FieldPart("after", "z")])
    start = body.index(NEAR_CLOSE) + len(NEAR_CLOSE) + len(b"\r\n--")
    for cut in range(start, start + len(b"zz-def") + 1):
        parser, target = raw_parser()

        parser.data_received(body[:cut])
        parser.data_received(body[cut:])

        assert target.data() == data + b"z", (
            f"split at {cut}: streaming-form-data no longer recovers at the next `CRLF --` in "
            "the call: Framing must report every `CRLF --B-`, not only a chunk's last"
        )


@pytest.mark.parametrize("dashes", [b"-", b"--"])
def test_pin_tiny_chunk_of_dashes_after_part_headers_fails(dashes: bytes) -> None:
    """Upstream bug (found by tests/unit/client/test_formbody.py's property test): a chunk of just
    `-` or `--` right after the headers of a part other than the first fails a valid body.
    When this pin fails, upstream fixed it and MultipartStream's _min_feed can go."""
    parser, _ = raw_parser()
    _, chunks = bodies.tiny_dash_chunks(dashes)
    with pytest.raises(ParseFailedException):
        for chunk in chunks:
            parser.data_received(chunk)


def test_pin_unending_header_line_is_buffered_without_limit() -> None:
    parser, target = raw_parser()

    parser.data_received(bodies.BOUNDARY_LINE + bodies.FORM_DATA + b"X-Long: ")
    for _ in range(256):
        parser.data_received(b"a" * bodies.KiB)

    assert target.names() == ["matches", "filename", "start"], (
        "streaming-form-data now reacts to an endless part header line: "
        "Framing's bound on header sections may be redundant"
    )


@pytest.mark.parametrize(
    ("sent", "read"),
    [
        (b'name="f"; filename="my %22best%22 photo\\x.txt"', ("f", "my %22best%22 photox.txt")),
        (b'name="a\\b"; filename="dir\\\\x"', ("ab", "dir\\x")),
    ],
    ids=["browser-filename", "backslashes"],
)
def test_pin_names_are_read_as_rfc_5322_quoted_strings(sent: bytes, read: tuple[str, str]) -> None:
    """Browsers' `\\` is dropped (it escapes the next character) and their `%22` kept."""
    body = bodies.BOUNDARY_LINE + b"Content-Disposition: form-data; " + sent
    parser, target = raw_parser()

    parser.data_received(body + b"\r\n\r\nx\r\n" + bodies.CLOSING + b"\r\n")

    assert (target.calls[0][2], target.multipart_filename) == read, (
        "streaming-form-data now reads names differently: MultipartStream may no longer need "
        "to read them from the raw header section (app/forms/partheaders.py)"
    )
