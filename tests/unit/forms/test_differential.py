"""The service's reading of multipart bodies against another parser's: `multipart` (PyPI),
an RFC 7578 parser in strict mode that also reads names as the HTML standard writes them.

The corpus is bodies as Chromium and curl write them: their boundaries and exact header lines
(tests/e2e/test_browser.py and tests/e2e/test_curl_names.py check that the real programs
write these bytes), curl >= 7.81 and curl's old backslash escaping (`--form-escape`), a
Content-Type before or after Content-Disposition, names with quotes, backslashes, CR/LF,
Unicode and emoji, an empty file, delimiter-like bytes in a file, several parts. Both
parsers must read the same fields, filenames, media types and bytes, except in the cases of
DIFFERENCES, each with both readings and why they differ.
"""

from __future__ import annotations

import multipart
import pytest

from app.errors import MalformedMultipart
from app.forms.multipart import MultipartStream, PartEnd, PartStart

#: (field, filename, media type, bytes) per part, or REFUSED.
Reading = list[tuple[str, str | None, str | None, bytes]] | str
REFUSED = "refused"

CHROMIUM = "----WebKitFormBoundary7MA4YWxkTrZu0gW"
CURL = "------------------------e314e208f6c743f0"


def body(boundary: str, *parts: tuple[str, bytes]) -> bytes:
    """Parts given as (header lines, each ending CR LF; contents), then the close."""
    out = b"".join(
        f"--{boundary}\r\n".encode() + headers.encode() + b"\r\n" + data + b"\r\n"
        for headers, data in parts
    )
    return out + f"--{boundary}--\r\n".encode()


def disposition(name: str, filename: str | None = None) -> str:
    """A Content-Disposition line with the values between the quotes exactly as given."""
    line = f'Content-Disposition: form-data; name="{name}"'
    return line + (f'; filename="{filename}"' if filename is not None else "") + "\r\n"


def typed(media_type: str) -> str:
    return f"Content-Type: {media_type}\r\n"


PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
#: A file holding what looks like the delimiters of both boundaries, but none.
LOOKALIKE = (
    f"\r\n--{CHROMIUM[:-1]}\r\n\r\n--{CURL[:-1]}--\r\n--{CURL[:20]}\r\n--".encode() + b"\x00\xff"
)

CORPUS: dict[str, tuple[str, bytes]] = {
    # Chromium's fetch + FormData and form posts: names in the HTML standard's encoding.
    "chromium-issue-example": (
        CHROMIUM,
        body(
            CHROMIUM,
            (disposition("file", "my %22best%22 photo\\x.txt") + typed("text/plain"), b"hi"),
        ),
    ),
    "chromium-special-names": (
        CHROMIUM,
        body(
            CHROMIUM,
            (disposition("title"), "Grüße\r\nzwei Zeilen".encode()),
            (disposition("files", "a%0D%0Ab.bin") + typed("application/octet-stream"), PNG),
            (disposition("files", "😀 🎉 日本語.png") + typed("image/png"), PNG[:9]),
            (disposition("files", "dir\\") + typed("application/octet-stream"), b"x"),
            (disposition("fi%22eld\\x", "back\\\\slash.txt") + typed("text/plain"), b"y"),
            (disposition("files", "100% %41 %0d.txt") + typed("text/plain"), b"z"),
        ),
    ),
    "chromium-no-file-chosen": (
        CHROMIUM,
        body(
            CHROMIUM,
            (disposition("note"), b"v"),
            (disposition("file", "") + typed("application/octet-stream"), b""),
        ),
    ),
    "chromium-empty-file-and-lookalike-bytes": (
        CHROMIUM,
        body(
            CHROMIUM,
            (disposition("a", "empty.txt") + typed("text/plain"), b""),
            (disposition("b", "tricky.bin") + typed("application/octet-stream"), LOOKALIKE),
        ),
    ),
    # curl >= 7.81 (`curl -F 'file=@path;filename=...'`): the same encoding.
    "curl-names": (
        CURL,
        body(
            CURL,
            (disposition("file", "my %22best%22 photo\\x%0D%0A😀.txt") + typed("text/plain"), b"a"),
            (disposition("na%22me\\x"), b"value"),
        ),
    ),
    "curl-several-parts": (
        CURL,
        body(
            CURL,
            (disposition("title"), b"trip"),
            (disposition("file", "one.bin") + typed("application/octet-stream"), LOOKALIKE),
            (disposition("file", "two.bin") + typed("application/octet-stream"), b""),
            (disposition("file.sha256"), b"0" * 64),
            (disposition("other", "ünï.txt") + typed("text/plain"), "ünï".encode()),
        ),
    ),
    # Old curl and `curl --form-escape`: `"` and `\` escaped with a backslash.
    "old-curl-quotes": (
        CURL,
        body(
            CURL,
            (disposition("file", 'say \\"hi\\" \\\\o/.txt') + typed("text/plain"), b"a"),
            (disposition('na\\"me\\\\x'), b"value"),
        ),
    ),
    "old-curl-backslash-only": (
        CURL,
        body(CURL, (disposition("file", "a\\\\b.txt") + typed("text/plain"), b"a")),
    ),
    "old-curl-raw-line-break": (
        CURL,
        body(CURL, (disposition("file", "a\r\nb.txt") + typed("text/plain"), b"a")),
    ),
    # Content-Type before Content-Disposition (RFC 7578 does not order part headers).
    "content-type-first": (
        CURL,
        body(
            CURL,
            (typed("Image/PNG") + disposition("file", "p\\q.png"), PNG),
            (disposition("file", "r.txt") + typed("text/plain; charset=utf-8"), b"r"),
        ),
    ),
    # RFC 5987 filename*, which RFC 7578 tells senders not to use.
    "filename-star": (
        CURL,
        body(
            CURL,
            (
                "Content-Disposition: form-data; name=\"file\"; filename*=UTF-8''na%C3%AFve.txt\r\n"
                + typed("text/plain"),
                b"n",
            ),
        ),
    ),
    # What Internet Explorer sent: the whole path.
    "windows-path": (
        CHROMIUM,
        body(CHROMIUM, (disposition("file", "C:\\Users\\me\\a.txt") + typed("text/plain"), b"w")),
    ),
    # A whole boundary inside a file, followed by neither CR LF nor `--`.
    "boundary-then-dash-in-a-file": (
        CURL,
        body(
            CURL, (disposition("file", "f.bin") + typed("text/plain"), f"\r\n--{CURL}-x".encode())
        ),
    ),
    # A part without a name: no browser sends one.
    "nameless-part": (
        CURL,
        body(
            CURL,
            ('Content-Disposition: form-data; filename="x.txt"\r\n' + typed("text/plain"), b"x"),
            (disposition("file", "y.txt") + typed("text/plain"), b"y"),
        ),
    ),
}

#: case -> (the service's reading, multipart's reading, why they differ).
DIFFERENCES: dict[str, tuple[Reading, Reading, str]] = {
    "filename-star": (
        [("file", "naïve.txt", "text/plain", b"n")],
        [("file", None, "text/plain", b"n")],
        "multipart ignores filename*= (a text field to it); the service decodes it (RFC 5987), "
        "as it always has for clients that send it",
    ),
    "windows-path": (
        [("file", "C:\\Users\\me\\a.txt", "text/plain", b"w")],
        [("file", "a.txt", "text/plain", b"w")],
        "multipart cuts a Windows path to its last segment; the service answers the name as "
        "sent and keeps only the last segment in the object key (app/forms/keys.py)",
    ),
    "boundary-then-dash-in-a-file": (
        [("file", "f.bin", "text/plain", f"\r\n--{CURL}-x".encode())],
        REFUSED,
        "RFC 2046 forbids the boundary inside a part, and a strict parser refuses it; the "
        "service ends a part only at a whole delimiter line (app/forms/framing.py) and keeps "
        "these bytes as data. No client sends them: each picks a boundary its data lacks",
    ),
    "nameless-part": (
        [("file", "y.txt", "text/plain", b"y")],
        REFUSED,
        "a strict parser refuses a part without a name; the service skips it, as "
        "streaming-form-data does",
    ),
}


def service_reading(boundary: str, data: bytes, piece: int) -> Reading:
    """What MultipartStream reads from `data` fed in pieces of `piece` bytes."""
    stream = MultipartStream(
        {"content-type": f"multipart/form-data; boundary={boundary}"}, max_part_header_bytes=8192
    )
    parts: list[tuple[str, str | None, str | None, bytes]] = []
    current: PartStart | None = None
    contents = bytearray()
    try:
        events = [
            e for at in range(0, len(data), piece) for e in stream.feed(data[at : at + piece])
        ]
        events += stream.finish()
    except MalformedMultipart:
        return REFUSED
    for event in events:
        if isinstance(event, PartStart):
            current, contents = event, bytearray()
        elif isinstance(event, PartEnd):
            assert current is not None
            parts.append((current.field, current.filename, current.content_type, bytes(contents)))
        else:
            contents += event
    return parts


def multipart_reading(boundary: str, data: bytes) -> Reading:
    parts: list[tuple[str, str | None, str | None, bytes]] = []
    contents = bytearray()
    segment = None
    try:
        with multipart.PushMultipartParser(boundary, strict=True) as parser:
            for event in parser.parse(data):
                if isinstance(event, multipart.MultipartSegment):
                    segment, contents = event, bytearray()
                elif event is None:
                    assert segment is not None
                    parts.append(
                        (segment.name, segment.filename, segment.content_type, bytes(contents))
                    )
                else:
                    contents += event
            for _ in parser.parse(b""):
                pass
    except multipart.MultipartError:
        return REFUSED
    return parts


def test_the_corpus_has_what_the_brief_of_the_test_says() -> None:
    assert set(DIFFERENCES) <= set(CORPUS)
    assert multipart_reading(*CORPUS["chromium-issue-example"]) == [
        ("file", 'my "best" photo\\x.txt', "text/plain", b"hi")
    ]


@pytest.mark.parametrize("case", CORPUS)
def test_the_service_and_multipart_read_the_same(case: str) -> None:
    boundary, data = CORPUS[case]
    theirs = multipart_reading(boundary, data)
    ours = service_reading(boundary, data, len(data))
    for piece in (1, 7, 64):  # held part starts and split header sections change nothing
        assert service_reading(boundary, data, piece) == ours, f"in pieces of {piece}"
    if case in DIFFERENCES:
        expected_ours, expected_theirs, why = DIFFERENCES[case]
        assert (ours, theirs) == (expected_ours, expected_theirs), why
    else:
        assert ours == theirs
