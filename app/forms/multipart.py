"""Glue between the request body and streaming-form-data's incremental parser.

The parser is synchronous and calls its target from inside `data_received`. As in Starlette's
form parser, the target here only records what happened (`PartStart`, file or field bytes,
`PartEnd`); the async request loop then acts on the events with `await`, so storage calls never
run inside the parser and backpressure comes from the loop not reading the next chunk.

What we found by experiment with streaming-form-data 2.x (each pinned in
tests/unit/test_formstream.py):
- one target registered with a `matches` callable that accepts every name receives every part;
  `matches` is called with the part's real field name just before the part starts;
- a part's Content-Type arrives after `on_start` (the part starts at Content-Disposition), and
  the target's previous value is not cleared between parts;
- a part without Content-Disposition or without a name is skipped silently (no callbacks
  for its body either);
- non-UTF-8 header bytes raise UnicodeDecodeError, not ParseFailedException;
- `on_finish` also runs on a parse error, and a body that simply stops (no closing boundary)
  raises nothing: completion must be checked from the parser's state at the end;
- the closing boundary is missed when more than two bytes follow it in the same chunk (an
  epilogue): the last part then never ends and the bytes of the boundary leak into it. We feed
  the parser up to the end of the closing boundary first, which avoids it;
- a header line that never ends is buffered without limit, so we bound the bytes the parser
  may take without reporting anything;
- a chunk that lies wholly inside a run of dashes (or a longer prefix of the boundary line)
  at the start of a part's body makes the parser fail ("internal errors") on a valid body
  that TCP happened to split there. Such a run is shorter than the closing delimiter, so we
  never hand the parser less than that: a shorter chunk waits to be joined to the next one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from streaming_form_data import StreamingFormDataParser
from streaming_form_data.parser import ParseFailedException, parse_content_boundary
from streaming_form_data.targets import BaseTarget

from app.errors import MalformedMultipart, PartHeadersTooLarge, UnsupportedMediaType


@dataclasses.dataclass
class PartStart:
    """A part begins. `content_type` may be filled in after this event, as headers are read."""

    field: str
    filename: str | None
    content_type: str | None = None


@dataclasses.dataclass(frozen=True)
class PartEnd:
    """The current part ended at a boundary."""


Event = PartStart | PartEnd | bytes

# The parser keeps up to about this much body in hand before it reports it (its internal
# minimum emitted chunk is 1 KiB), so a part's body never looks like a stalled header.
_PARSER_SLACK = 2048


class _RecordingTarget(BaseTarget):  # type: ignore[misc]
    """Accepts every part and turns the parser's callbacks into a list of events."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[Event] = []
        self._name = ""
        self._filename: str | None = None
        self._part: PartStart | None = None

    def matches(self, registered: str, name: str) -> bool:
        self._name = name
        return True

    def set_multipart_filename(self, filename: str | None) -> None:
        self._filename = filename

    def set_multipart_content_type(self, content_type: str | None) -> None:
        if self._part is not None:
            self._part.content_type = content_type

    def on_start(self) -> None:
        self._part = PartStart(self._name, self._filename)
        self.events.append(self._part)

    def on_data_received(self, chunk: bytes) -> None:
        if chunk:
            self.events.append(chunk)

    def on_finish(self) -> None:
        self.events.append(PartEnd())
        self._part = None


def _parser_state(parser: StreamingFormDataParser) -> int:
    """The C parser's state number; the library exposes no 'finished' flag (see above)."""
    reduced: tuple[Any, ...] = parser._parser.__reduce_cython__()
    state_tuple = reduced[2] if len(reduced) > 2 else reduced[1][2]
    return int(state_tuple[11])


def _state_after(body: bytes) -> int:
    parser = StreamingFormDataParser({"content-type": "multipart/form-data; boundary=x"})
    parser.data_received(body)
    return _parser_state(parser)


# Learned from the library itself at import, so an upgrade that changes its layout fails here.
_STATE_END = _state_after(b"--x--\r\n")
_STATE_BODY = _state_after(b'--x\r\nContent-Disposition: form-data; name="a"\r\n\r\nbody')
if len({_STATE_END, _STATE_BODY, _state_after(b"--x\r\n")}) != 3:  # pragma: no cover
    raise RuntimeError("streaming-form-data changed: cannot tell a finished body from an open one")


class MultipartStream:
    """Feeds body chunks to the parser and returns what happened, as events."""

    def __init__(self, headers: Mapping[str, str], *, max_part_header_bytes: int) -> None:
        content_type = headers.get("content-type", "")
        if content_type.split(";", 1)[0].strip().lower() != "multipart/form-data":
            raise UnsupportedMediaType(
                "the body must be multipart/form-data "
                f"(got {content_type.split(';', 1)[0].strip()[:100] or 'no Content-Type'})"
            )
        try:
            boundary = parse_content_boundary(headers)
        except ParseFailedException as exc:
            raise MalformedMultipart(f"bad multipart Content-Type: {exc}") from None
        if len(boundary) > 70:  # RFC 2046: 1 to 70 characters
            raise MalformedMultipart("the multipart boundary is longer than 70 characters")
        self._parser = StreamingFormDataParser(headers)
        self._target = _RecordingTarget()
        self._parser.register("*", self._target, self._target.matches)
        self._closing = b"\r\n--" + boundary + b"--"
        self._tail = b""
        self._silent_bytes = 0
        self._silent_limit = max_part_header_bytes + _PARSER_SLACK + 2 * len(self._closing)
        self._ended = False
        self._pending = b""  # a chunk too small to hand to the parser yet (see above)
        self._part_open = False
        self._min_feed = len(self._closing) + 2

    @property
    def ended(self) -> bool:
        """The closing boundary has been read; anything after it is the ignored epilogue."""
        return self._ended

    def feed(self, chunk: bytes) -> list[Event]:
        """Parse the next chunk of the body; raise MalformedMultipart on bad input."""
        if self._ended or not chunk:
            return []
        if self._pending:
            chunk, self._pending = self._pending + chunk, b""
        if len(chunk) < self._min_feed:
            self._pending = chunk
            return []
        return self._feed_chunk(chunk)

    def _feed_chunk(self, chunk: bytes) -> list[Event]:
        events: list[Event] = []
        if not self._tail and chunk.startswith(self._closing[2:]):
            # The first chunk (at least a delimiter long) starts with the closing delimiter:
            # a form with no parts, which the library would wait on forever.
            self._ended = True
            return events
        start, cut = 0, self._closing_end(chunk)
        while cut is not None:
            # Up to what looks like the closing delimiter. It may be file data instead (the
            # bytes `--boundary--` right after a part's headers): then look further on.
            self._feed(chunk[start:cut], events)
            if _parser_state(self._parser) == _STATE_END:
                self._ended = True
                return events
            start = cut
            later = chunk.find(self._closing, cut)
            cut = later + len(self._closing) if later >= 0 else None
        if start < len(chunk):
            self._feed(chunk[start:], events)
        return events

    def finish(self) -> list[Event]:
        """The body is over: its last events; MalformedMultipart unless it closed properly."""
        events: list[Event] = []
        if self._pending and not self._ended:
            events = self._feed_chunk(self._pending)
            self._pending = b""
        # Only the closing delimiter we saw ourselves counts: on some garbage the library
        # reaches its end state without one (found by tests/fuzz), which must not pass for a
        # complete body.
        if self._ended:
            return events
        raise MalformedMultipart("the body ended before the closing multipart boundary")

    def _check_order(self, new: list[Event]) -> None:
        """Parts must start, carry bytes, and end, one at a time. On some malformed header
        sections (a bare LF in a quoted name, found by tests/fuzz) the library starts a part
        that never ends and then starts the next: the body is refused, never half-read."""
        for event in new:
            # A start must come with no part open; bytes and an end with one open.
            if isinstance(event, PartStart) == self._part_open:
                raise MalformedMultipart("malformed multipart body: a part's headers are broken")
            if not isinstance(event, bytes):
                self._part_open = not self._part_open

    def _closing_end(self, chunk: bytes) -> int | None:
        """Where in `chunk` a closing boundary ends, also one that began in the last chunk."""
        n = len(self._closing)
        seam = self._tail + chunk[: n - 1]
        at = seam.find(self._closing)
        if at >= 0:
            end = at + n - len(self._tail)
        else:
            at = chunk.find(self._closing)
            end = at + n if at >= 0 else -1
        self._tail = (self._tail + chunk)[-(n - 1) :] if len(chunk) < n else chunk[-(n - 1) :]
        return end if end >= 0 else None

    def _feed(self, data: bytes, events: list[Event]) -> None:
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
        self._check_order(new)
        events.extend(new)
        # Body bytes or a part's end show progress; a part's start does not, since its
        # header section (where a line may never end) follows the Content-Disposition line.
        if any(not isinstance(event, PartStart) for event in new):
            self._silent_bytes = 0
        else:
            self._silent_bytes += len(data)
            if self._silent_bytes > self._silent_limit:
                state = _parser_state(self._parser)
                if state == _STATE_END:  # ended without the closing delimiter (see finish)
                    raise MalformedMultipart("the body's closing multipart boundary is malformed")
                if state == _STATE_BODY:
                    # The body of a part the parser skips (no name): not a header problem.
                    self._silent_bytes = 0
                    return
                raise PartHeadersTooLarge("a part's header section (or boundary line) is too long")
