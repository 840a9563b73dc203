"""Glue between the request body and streaming-form-data's incremental parser.

The parser is synchronous and calls its target from inside `data_received`. As in Starlette's
form parser, the target here only records what happened (`PartStart`, file or field bytes,
`PartEnd`); the async request loop then acts on the events with `await`, so storage calls never
run inside the parser and backpressure comes from the loop not reading the next chunk.

What the parser does that this glue relies on or works around (each pinned in
tests/unit/forms/test_streaming_form_data.py):
- one target registered with a `matches` callable that accepts every name receives every part;
  it starts a part at its Content-Disposition line, before the rest of its headers;
- it reads each header line with the email package, whose quoted strings are RFC 5322's: a
  backslash escapes the next character (a browser's `photo\\x.txt` arrives as `photox.txt`) and
  `%22` stays as sent; a Content-Type line before Content-Disposition is dropped. So names,
  filenames and the Content-Type come from the raw header section instead, which Framing keeps
  (app/forms/partheaders.py reads it as browsers write it), and a part's `PartStart` is passed
  on only once its whole header section has been read;
- a part without Content-Disposition or without a name is skipped silently (no callbacks);
- non-UTF-8 header bytes raise UnicodeDecodeError, not ParseFailedException;
- it never says where the body ends, nor that it ended: a body that simply stops raises
  nothing. So app/forms/framing.py reads the delimiters from the bytes, and the parser's
  events must agree with it: every part the parser reports ends exactly at a delimiter with
  exactly the bytes between its header section and that delimiter, or the body is refused;
- after the bytes `CRLF --B-` (a close delimiter but its last byte) it skips ahead without
  updating its search for the close delimiter, until the next `CRLF --` or the end of the
  call: a close delimiter that ends right there is missed when more than two bytes follow in
  the same call (the last part then swallows it and the epilogue), and one is "found" when
  the next call starts with `-` (the part is cut short). So a call ends right after the close
  delimiter, nothing after it is ever passed, and a call that holds `CRLF --B-` with no
  `CRLF --` after it ends right there;
- a header line that never ends is buffered without limit: Framing bounds header sections;
- a chunk that lies wholly inside a run of dashes (or a longer prefix of the boundary line)
  at the start of a part's body makes it fail ("internal errors") on a valid body that TCP
  happened to split there. Such a run is shorter than the close delimiter, so the parser is
  never handed a chunk shorter than that: a shorter one waits to be joined to the next;
- on some malformed header sections (a bare LF in a quoted name) it starts a part that never
  ends, then starts the next: such a body is refused, never half-read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping

from streaming_form_data import StreamingFormDataParser
from streaming_form_data.parser import ParseFailedException, parse_content_boundary
from streaming_form_data.targets import BaseTarget

from app.errors import MalformedMultipart, PartHeadersTooLarge, UnsupportedMediaType
from app.forms.framing import Delimiter, Framing, HeadersTooLong, Mark
from app.forms.partheaders import read_part_headers


@dataclasses.dataclass(frozen=True)
class PartStart:
    """A part begins, as its whole header section says: `filename` is None for a text field;
    `content_type` is the lowercased media type, None without a Content-Type header."""

    field: str
    filename: str | None
    content_type: str | None = None


@dataclasses.dataclass(frozen=True)
class PartEnd:
    """The current part ended at a boundary."""


Event = PartStart | PartEnd | bytes


class _RecordingTarget(BaseTarget):  # type: ignore[misc]
    """Accepts every part and turns the parser's callbacks into a list of events."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[Event] = []
        self._name = ""

    def matches(self, registered: str, name: str) -> bool:
        self._name = name
        return True

    def on_start(self) -> None:
        # The parser's reading of the name; MultipartStream replaces it from the raw headers.
        self.events.append(PartStart(self._name, None))

    def on_data_received(self, chunk: bytes) -> None:
        if chunk:
            self.events.append(chunk)

    def on_finish(self) -> None:
        self.events.append(PartEnd())


def _boundary(headers: Mapping[str, str]) -> bytes:
    """The multipart boundary of a multipart/form-data request, or the error to answer."""
    content_type = headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip()
    if media_type.lower() != "multipart/form-data":
        raise UnsupportedMediaType(
            f"the body must be multipart/form-data (got {media_type[:100] or 'no Content-Type'})"
        )
    try:
        boundary: bytes = parse_content_boundary(headers)
    except ParseFailedException as exc:
        raise MalformedMultipart(f"bad multipart Content-Type: {exc}") from None
    if len(boundary) > 70:  # RFC 2046: 1 to 70 characters
        raise MalformedMultipart("the multipart boundary is longer than 70 characters")
    return boundary


class MultipartStream:
    """Feeds body chunks to the parser and returns what happened, as events."""

    def __init__(self, headers: Mapping[str, str], *, max_part_header_bytes: int) -> None:
        boundary = _boundary(headers)
        self._parser = StreamingFormDataParser(headers)
        self._target = _RecordingTarget()
        self._parser.register("*", self._target, self._target.matches)
        self._framing = Framing(boundary, max_header_bytes=max_part_header_bytes)
        self._ended = False
        self._min_feed = len(b"\r\n--" + boundary + b"--\r\n")  # the close delimiter, CR LF
        self._pending = b""  # a chunk too small to hand to the parser yet (see above)
        self._part_open = False
        self._part_bytes = 0  # bytes of the open part so far
        self._started: PartStart | None = None  # its header section not all read yet

    @property
    def ended(self) -> bool:
        """The close delimiter has been read; anything after it is the ignored epilogue."""
        return self._ended

    def feed(self, chunk: bytes) -> list[Event]:
        """Parse the next chunk of the body; MalformedMultipart or PartHeadersTooLarge on bad
        input."""
        if self._ended or not chunk:
            return []
        if self._pending:
            chunk, self._pending = self._pending + chunk, b""
        if len(chunk) < self._min_feed:
            self._pending = chunk
            return []
        return self._feed_chunk(chunk)

    def finish(self) -> list[Event]:
        """The body is over: its last events; MalformedMultipart unless it closed properly."""
        events: list[Event] = []
        if self._pending and not self._ended:
            events = self._feed_chunk(self._pending)
            self._pending = b""
        if self._ended:
            return events
        raise MalformedMultipart("the body ended before the closing multipart boundary")

    def _feed_chunk(self, chunk: bytes) -> list[Event]:
        """Hand `chunk` to the parser in pieces that end where the framing or the parser's
        bugs need them to, checking the parser's events against each delimiter."""
        events: list[Event] = []
        for piece, mark in self._pieces(chunk):
            new = self._parse(piece)
            self._follow(new, mark)
            events += self._with_headers(new, mark.end if mark else self._framing.offset)
            if isinstance(mark, HeadersTooLong):
                raise PartHeadersTooLarge("a part's header section (or boundary line) is too long")
            if isinstance(mark, Delimiter) and mark.closing:
                self._ended = True
                break
        return events

    def _pieces(self, chunk: bytes) -> Iterator[tuple[bytes, Mark | None]]:
        """`chunk` cut where the framing marks it; each piece with the mark it ends at."""
        chunk_start = self._framing.offset
        start = 0
        for mark in self._framing.scan(chunk):
            cut = mark.end - chunk_start
            yield chunk[start:cut], mark
            start = cut
        if start < len(chunk):
            yield chunk[start:], None

    def _parse(self, data: bytes) -> list[Event]:
        """The parser's events for `data`, in order; MalformedMultipart if it refuses it."""
        if not data:
            return []
        try:
            self._parser.data_received(data)
        except ParseFailedException as exc:
            raise MalformedMultipart(f"malformed multipart body: {exc}") from None
        except UnicodeDecodeError:
            raise MalformedMultipart("a part header is not valid UTF-8") from None
        except Exception as exc:  # the parser's header parsing may raise anything
            raise MalformedMultipart(f"malformed multipart part header: {exc}") from None
        new = self._target.events
        self._target.events = []
        return new

    def _with_headers(self, new: list[Event], piece_end: int) -> list[Event]:
        """`new` with its PartStart made from the part's raw header section, or held back
        (with nothing after it) until the section has been read to its end.

        A piece holds at most one header section's end (pieces end at delimiters), and the
        parser starts a part inside that section, never after it.
        """
        sections = []
        while self._framing.sections and self._framing.sections[0].end <= piece_end:
            sections.append(self._framing.sections.popleft())
        if self._started is not None:
            new.insert(0, self._started)
            self._started = None
        starts = [index for index, event in enumerate(new) if isinstance(event, PartStart)]
        if len(sections) > 1 or len(starts) > 1:
            raise _misread()
        if not starts:
            return new  # no part, or one the parser skips (no Content-Disposition name)
        start = new[starts[0]]
        assert isinstance(start, PartStart)
        if not sections:
            if starts[0] != len(new) - 1:
                raise _misread()
            self._started = start
            return new[:-1]
        headers = read_part_headers(sections[0].raw)
        if headers.name is None:
            raise MalformedMultipart("a part's Content-Disposition name cannot be read")
        new[starts[0]] = PartStart(headers.name, headers.filename, headers.content_type)
        return new

    def _follow(self, new: list[Event], mark: Mark | None) -> None:
        """Check the parser's events for a piece that ends at `mark` (None: at no delimiter).

        Parts must start, carry bytes, and end, one at a time; a part ends only at a delimiter,
        with exactly the bytes the framing found between its header section and it; and the
        part open at a delimiter must end there.
        """
        delimiter = mark if isinstance(mark, Delimiter) else None
        for index, event in enumerate(new):
            if isinstance(event, PartStart) == self._part_open:
                raise MalformedMultipart("malformed multipart body: a part's headers are broken")
            if isinstance(event, PartStart):
                self._part_open, self._part_bytes = True, 0
            elif isinstance(event, bytes):
                self._part_bytes += len(event)
            else:
                self._part_open = False
                if (
                    delimiter is None
                    or index != len(new) - 1
                    or self._part_bytes != delimiter.body_size
                ):
                    raise _misread()
        if delimiter is not None and self._part_open:
            raise _misread()


def _misread() -> MalformedMultipart:
    return MalformedMultipart("malformed multipart body: a part boundary cannot be read reliably")
