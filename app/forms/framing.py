"""Where a multipart body's delimiters lie, read from its bytes alone.

streaming-form-data parses part headers and reports each part's bytes, but it says neither
where the body ends nor whether it ended at all, and some of its bugs move a delimiter
(app/forms/multipart.py). `Framing` is the independent reading that MultipartStream checks the
parser against: the grammar the parser follows on the bodies it accepts.

- The opening: the body starts with the first boundary line `--B CRLF`, after nothing but
  CR LF pairs (anything else the parser refuses). It is read as a delimiter after a line
  break, so a body that starts with `--B--` is a form with no parts.
- A header section runs from the end of a delimiter to the first blank line (CR LF CR LF).
- A body runs from there to the next `CRLF --B CRLF` (the next part's delimiter) or
  `CRLF --B--` (the close delimiter: the body is over; what follows is the epilogue).

Each complete header section is kept (`sections`, in order): streaming-form-data reads part
headers through the email package, which loses bytes of names as browsers send them, so
MultipartStream reads them again from these raw bytes (app/forms/partheaders.py).

Header sections and the opening are bounded (`max_header_bytes`): a line that never ends
would otherwise be buffered by the parser without limit. And since the parser mistakes such
bytes (app/forms/multipart.py), the last `CRLF --B-` of each chunk's body, when it does not
close the body, is reported too.
"""

from __future__ import annotations

import collections
import dataclasses
import enum

_BLANK_LINE = b"\r\n\r\n"


class Region(enum.Enum):
    OPENING = "opening"  # up to the end of the first boundary line
    HEADERS = "headers"
    BODY = "body"
    DONE = "done"  # the close delimiter was read, or the limit passed: nothing more is read


@dataclasses.dataclass(frozen=True)
class Delimiter:
    """A delimiter ends at stream offset `end`, after a body of `body_size` bytes."""

    end: int
    body_size: int | None  # None: it ends the opening, not a part
    closing: bool  # the close delimiter: no part follows


@dataclasses.dataclass(frozen=True)
class NearClose:
    """The chunk's last bytes `CRLF --B-` in a body, followed by no delimiter in the chunk
    nor by the `-` that would close the body, end at stream offset `end`."""

    end: int


@dataclasses.dataclass(frozen=True)
class HeadersTooLong:
    """The header section (or the opening) being read passes the limit after `end`."""

    end: int


Mark = Delimiter | NearClose | HeadersTooLong


@dataclasses.dataclass(frozen=True)
class HeaderSection:
    """A part's header lines, `raw` (without the blank line after them), whose blank line
    ends at stream offset `end`: the part's body starts there."""

    end: int
    raw: bytes


class Framing:
    """Reads a body chunk by chunk and reports, as stream offsets, where its marks end."""

    def __init__(self, boundary: bytes, *, max_header_bytes: int) -> None:
        self._prefix = b"\r\n--" + boundary  # then CR LF (a delimiter) or `--` (the close)
        self._max_header_bytes = max_header_bytes
        self.region = Region.OPENING
        self.offset = 0  # stream offset of the next byte to scan
        self._region_start = 0  # stream offset where the current region began
        # Scanned bytes that may begin a delimiter or a blank line. At the start: the line
        # break the first boundary line is read after (it has no stream offset).
        self._carry = b"\r\n"
        #: Complete header sections not yet taken by the reader, oldest first.
        self.sections: collections.deque[HeaderSection] = collections.deque()
        self._section = bytearray()  # the header section being read, from its first byte

    def scan(self, chunk: bytes) -> list[Mark]:
        """The marks that end in `chunk`, in order; nothing after a close or an overflow."""
        if self.region is Region.DONE:
            return []
        window = _Joined(self._carry, chunk, len(self._prefix) + 2)
        base = self.offset - len(self._carry)  # stream offset of window[0]
        self.offset += len(chunk)
        # Most chunks hold no `CRLF --B` at all: one search says so.
        prefixes = _Search(window, self._prefix)
        delimiters = _Search(window, self._prefix + b"\r\n")
        closes = _Search(window, self._prefix + b"--")
        marks: list[Mark] = []
        pos = 0
        while self.region is not Region.DONE:
            if self.region is Region.HEADERS:
                found = window.find(_BLANK_LINE, pos)
                if found < 0:
                    break
                pos = found + len(_BLANK_LINE)
                if self._within_limit(base + pos, marks):
                    self._keep_section(window, base, base + found, base + pos)
                    self._enter(Region.BODY, base + pos)
                continue
            if prefixes.next(pos) < 0:
                break
            delimiter, close = delimiters.next(pos), closes.next(pos)
            closing = close >= 0 and (delimiter < 0 or close < delimiter)
            found = close if closing else delimiter
            if found < 0:
                break
            pos = found + len(self._prefix) + 2
            if self.region is Region.BODY:
                size: int | None = base + found - self._region_start
            elif self._within_limit(base + pos, marks):
                size = None
            else:
                break
            marks.append(Delimiter(base + pos, size, closing))
            if closing:
                self.region = Region.DONE
            else:
                self._enter(Region.HEADERS, base + pos)
        if self.region is Region.BODY:
            if prefixes.next(pos) >= 0:
                self._near_close(window, pos, base, marks)
        elif self.region is not Region.DONE:
            within = self._within_limit(self.offset, marks)
            if within and self.region is Region.HEADERS:  # keep what it has so far
                read = self._region_start + len(self._section)
                self._section += window.slice(read - base, len(window))
        self._carry = window.tail(pos, len(self._prefix) + 1)  # a delimiter but its last byte
        return marks

    def _near_close(self, window: _Joined, pos: int, base: int, marks: list[Mark]) -> None:
        """Mark the last `CRLF --B-` from `pos` if a byte follows it (that byte is not `-`:
        the close delimiter would have been found)."""
        found = window.rfind(self._prefix + b"-", pos)
        end = found + len(self._prefix) + 1
        if found >= 0 and end < len(window):
            marks.append(NearClose(base + end))

    def _keep_section(self, window: _Joined, base: int, lines_end: int, end: int) -> None:
        """Keep the header section that ends with its last line at `lines_end`, its blank
        line at `end`: the bytes kept from earlier chunks, then this one's."""
        read = self._region_start + len(self._section)
        if lines_end <= read:
            raw = bytes(self._section[: lines_end - self._region_start])
        else:
            raw = bytes(self._section) + window.slice(read - base, lines_end - base)
        self.sections.append(HeaderSection(end, raw))

    def _enter(self, region: Region, at: int) -> None:
        self.region = region
        self._region_start = at
        self._section.clear()

    def _within_limit(self, at: int, marks: list[Mark]) -> bool:
        """Whether the opening or header section read up to `at` is within the limit; if not,
        mark where it passed it and stop reading."""
        if self.region is Region.BODY or at - self._region_start <= self._max_header_bytes:
            return True
        marks.append(HeadersTooLong(self._region_start + self._max_header_bytes))
        self.region = Region.DONE
        return False


class _Joined:
    """`head + chunk`, searched without copying the chunk (64 KiB at a time, every byte of
    every upload). `head` is short: only a match that starts in it needs the two joined."""

    def __init__(self, head: bytes, chunk: bytes, longest: int) -> None:
        self._head = head
        self._chunk = chunk
        self._seam = head + chunk[: longest - 1]  # every match of up to `longest` bytes
        self._length = len(head) + len(chunk)

    def find(self, pattern: bytes, start: int) -> int:
        n = len(self._head)
        if start < n:
            found = self._seam.find(pattern, start)
            if found >= 0:
                return found
            start = n
        found = self._chunk.find(pattern, start - n)
        return found + n if found >= 0 else -1

    def rfind(self, pattern: bytes, start: int) -> int:
        n = len(self._head)
        found = self._chunk.rfind(pattern, max(start - n, 0))
        if found >= 0:
            return found + n
        return self._seam.rfind(pattern, start) if start < n else -1

    def __len__(self) -> int:
        return self._length

    def slice(self, start: int, end: int) -> bytes:
        """The bytes from `start` to `end` (a short run: a header section at most)."""
        n = len(self._head)
        if start >= n:
            return self._chunk[start - n : end - n]
        return (self._head + self._chunk[: max(end - n, 0)])[start:end]

    def tail(self, start: int, size: int) -> bytes:
        """The bytes from `start`, or only the last `size` of them."""
        start = max(start, self._length - size)
        n = len(self._head)
        if start >= n:
            return self._chunk[start - n :]
        return self._head[start:] + self._chunk


class _Search:
    """The next place of `pattern` in `window` from a growing position, each searched once."""

    def __init__(self, window: _Joined, pattern: bytes) -> None:
        self._window = window
        self._pattern = pattern
        self._found = -2  # not searched yet; -1: nowhere after the last position asked

    def next(self, pos: int) -> int:
        if self._found == -2 or 0 <= self._found < pos:
            self._found = self._window.find(self._pattern, pos)
        return self._found
