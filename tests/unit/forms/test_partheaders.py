"""app/forms/partheaders.py: the rules of docs/api.md's "Filenames", one table per rule."""

from __future__ import annotations

import pytest

from app.errors import MalformedMultipart
from app.forms.partheaders import (
    PartHeaders,
    decode_ext_value,
    decode_value,
    disposition_names,
    read_part_headers,
)

#: What is between the quotes, and the name it means.
BROWSER_VALUES = {
    "plain": ("photo.jpg", "photo.jpg"),
    "quote": ("my %22best%22 photo.txt", 'my "best" photo.txt'),
    "backslash-kept": ("photo\\x.txt", "photo\\x.txt"),
    "issue-example": ("my %22best%22 photo\\x.txt", 'my "best" photo\\x.txt'),
    "doubled-backslash-kept": ("a\\\\b", "a\\\\b"),  # a browser's name with two backslashes
    "trailing-backslash": ("dir\\", "dir\\"),
    "cr-lf": ("a%0D%0Ab", "a\r\nb"),
    "lone-cr-and-lf": ("%0D%0A%0A%0D", "\r\n\n\r"),
    "other-escapes-untouched": ("100%25 %41 %2F", "100%25 %41 %2F"),
    "lowercase-escapes-untouched": ("%0d%0a", "%0d%0a"),  # browsers write uppercase only
    "percent-alone": ("50% off", "50% off"),
    "decoded-once": ("%2522", "%2522"),
    "unicode": ("ünïcödé €.txt", "ünïcödé €.txt"),
    "emoji": ("👩\u200d💻 🎉.png", "👩\u200d💻 🎉.png"),
    "semicolon-equals": ("a; b=c", "a; b=c"),
    "empty": ("", ""),
}


@pytest.mark.parametrize(("raw", "name"), BROWSER_VALUES.values(), ids=BROWSER_VALUES.keys())
def test_browser_values_decode_only_the_three_escapes(raw: str, name: str) -> None:
    assert decode_value(raw) == name


#: Old curl and `curl --form-escape` write `"` as `\"` and `\` as `\\`.
OLD_CURL_VALUES = {
    # A quote inside the value: only backslash escaping explains it, so it is undone.
    "quote": ('say \\"hi\\"', 'say "hi"'),
    "quote-and-backslash": ('my \\"best\\" photo\\\\x.txt', 'my "best" photo\\x.txt'),
    "escaped-backslash-before-quote": ('a\\\\\\"b', 'a\\"b'),
    "percent-kept": ('%22 \\"', '%22 "'),
    # No quote inside: read as a browser wrote it (the encodings overlap; docs/api.md).
    "backslash-only-is-ambiguous": ("a\\\\b", "a\\\\b"),
}


@pytest.mark.parametrize(("raw", "name"), OLD_CURL_VALUES.values(), ids=OLD_CURL_VALUES.keys())
def test_backslash_escapes_are_undone_only_with_a_quote_inside(raw: str, name: str) -> None:
    assert decode_value(raw) == name


#: A Content-Disposition value, and the (name, filename) read from it.
DISPOSITIONS = {
    "chromium-file": ('form-data; name="file"; filename="a b.txt"', ("file", "a b.txt")),
    "chromium-field": ('form-data; name="title"', ("title", None)),
    "issue-example": (
        'form-data; name="file"; filename="my %22best%22 photo\\x.txt"',
        ("file", 'my "best" photo\\x.txt'),
    ),
    "name-escaped-too": ('form-data; name="a%22b\\c"', ('a"b\\c', None)),
    "trailing-backslash-then-filename": (
        'form-data; name="dir\\"; filename="x\\"',
        ("dir\\", "x\\"),
    ),
    "old-curl": (
        'form-data; name="file"; filename="say \\"hi\\" \\\\o/.txt"',
        ("file", 'say "hi" \\o/.txt'),
    ),
    "quoted-semicolon": ('form-data; name="f"; filename="a;b=c"', ("f", "a;b=c")),
    "spaces-and-case": ('Form-Data ; NAME = "f" ;FileName="x"  ', ("f", "x")),
    "tokens": ("form-data; name=f; filename=a%22b.txt", ("f", 'a"b.txt')),
    "empty-filename": ('form-data; name="f"; filename=""', ("f", "")),
    "no-name": ('form-data; filename="x"', (None, "x")),
    "repeated-last-wins": ('form-data; name="a"; name="b"', ("b", None)),
    "parameter-without-value": ('form-data; flag; name="f";; filename="x";', ("f", "x")),
    "filename-star": (
        "form-data; name=\"f\"; filename*=UTF-8''na%C3%AFve%20%22x%22.txt",
        ("f", 'naïve "x".txt'),
    ),
    "filename-star-wins-after": (
        'form-data; name="f"; filename="a.txt"; filename*=UTF-8\'\'b.txt',
        ("f", "b.txt"),
    ),
    "filename-star-wins-before": (
        'form-data; name="f"; filename*=UTF-8\'\'b.txt; filename="a.txt"',
        ("f", "b.txt"),
    ),
    "filename-star-unknown-charset": (
        'form-data; name="f"; filename="a.txt"; filename*=koi8-r\'\'b.txt',
        ("f", "a.txt"),
    ),
    "filename-star-not-ext-value": (
        'form-data; name="f"; filename="a.txt"; filename*=b.txt',
        ("f", "a.txt"),
    ),
}


@pytest.mark.parametrize(("value", "names"), DISPOSITIONS.values(), ids=DISPOSITIONS.keys())
def test_disposition_names(value: str, names: tuple[str | None, str | None]) -> None:
    assert disposition_names(value) == names


@pytest.mark.parametrize(
    "value",
    ['form-data; name="f"; filename="unclosed', 'form-data; name="f"x', 'form-data; name="'],
)
def test_an_unclosed_quote_is_malformed(value: str) -> None:
    with pytest.raises(MalformedMultipart, match="unclosed quote"):
        disposition_names(value)


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        ("UTF-8''na%C3%AFve.txt", "naïve.txt"),
        ("utf-8'en'%E2%82%AC", "€"),
        ("iso-8859-1''caf%E9.txt", "café.txt"),
        ("''plain.txt", "plain.txt"),
        ("UTF-8''%FF%FE.txt", "\ufffd\ufffd.txt"),
        ("UTF-8''", ""),
        ("UTF-8'no-second-quote", None),
        ("plain.txt", None),
        ("koi8-r''x", None),
    ],
)
def test_decode_ext_value(raw: str, decoded: str | None) -> None:
    assert decode_ext_value(raw) == decoded


DISPOSITION = b'Content-Disposition: form-data; name="f"; filename="a\\b.txt"'


@pytest.mark.parametrize(
    "section",
    [
        DISPOSITION + b"\r\nContent-Type: Text/Plain; charset=utf-8",
        b"Content-Type: Text/Plain; charset=utf-8\r\n" + DISPOSITION,
        b"content-type:text/plain\r\nX-Other: 1\r\n" + DISPOSITION.lower(),
    ],
    ids=["type-after", "type-before", "lowercase-header-names"],
)
def test_content_type_before_or_after_the_disposition(section: bytes) -> None:
    assert read_part_headers(section) == PartHeaders("f", "a\\b.txt", "text/plain")


def test_a_section_without_content_type_or_disposition() -> None:
    assert read_part_headers(DISPOSITION) == PartHeaders("f", "a\\b.txt", None)
    assert read_part_headers(b"Content-Type: image/png") == PartHeaders(None, None, "image/png")
    assert read_part_headers(b"") == PartHeaders(None, None, None)


def test_utf8_header_bytes_are_names() -> None:
    section = 'Content-Disposition: form-data; name="ü"; filename="日本 😀.txt"'.encode()
    assert read_part_headers(section) == PartHeaders("ü", "日本 😀.txt", None)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (b'Content-Disposition: form-data; name="\xff"', "not valid UTF-8"),
        (b'Content-Disposition: form-data; name="a\nb"', "bare CR or LF"),
        (b'Content-Disposition: form-data; name="a\rb"', "bare CR or LF"),
    ],
    ids=["not-utf-8", "bare-lf", "bare-cr"],
)
def test_sections_that_are_refused(section: bytes, message: str) -> None:
    with pytest.raises(MalformedMultipart, match=message):
        read_part_headers(section)
