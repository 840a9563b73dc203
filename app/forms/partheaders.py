"""A part's header section read the way browsers write it (docs/api.md, "Filenames").

The HTML standard's multipart/form-data encoding puts a field's name and a file's name in
`Content-Disposition: form-data; name="..."; filename="..."` with only three characters
percent-encoded: `"` as `%22`, CR as `%0D`, LF as `%0A`. Everything else, `\\` and `%`
included, goes as its UTF-8 bytes; curl does the same since 7.81. That is not RFC 5322's
quoted-string, where a backslash escapes the next character: read that way (as
streaming-form-data reads it, through the email package), `photo\\x.txt` loses its backslash
and `%22` stays `%22`. So the service reads the raw header section itself.

Old curl (before 7.81) and `curl --form-escape` escape `"` and `\\` with a backslash instead.
The two encodings overlap: `"a\\\\b"` is `a\\\\b` to a browser and `a\\b` to old curl. The browser
reading wins, except where only backslash escaping can explain the bytes: a value with a `"`
inside it (a browser would have sent `%22`) is unescaped the old way.
"""

from __future__ import annotations

import dataclasses
import re
import urllib.parse

from app.errors import MalformedMultipart

#: The HTML standard's escapes, exactly as browsers and curl >= 7.81 write them.
_PERCENT_ESCAPE = re.compile(r"%(22|0D|0A)")
_PERCENT_DECODED = {"22": '"', "0D": "\r", "0A": "\n"}
#: A backslash and the character it escapes (old curl, `curl --form-escape`).
_BACKSLASH_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
#: A quote that ends a quoted value: only white space, then `;` or the end of the line, after.
_CLOSING_QUOTE = re.compile(r'"[ \t]*(?:;|$)')
#: RFC 5987 ext-value: charset'language'percent-encoded bytes.
_EXT_VALUE = re.compile(r"([A-Za-z0-9!#$%&+^_`{}~-]*)'[A-Za-z0-9-]*'(.*)", re.DOTALL)
_EXT_CHARSETS = {"utf-8": "utf-8", "iso-8859-1": "iso-8859-1", "": "utf-8"}


@dataclasses.dataclass(frozen=True)
class PartHeaders:
    """What a part's headers say about it. `name` is None without a Content-Disposition name;
    `filename` is None for a text field; `content_type` is the lowercased media type."""

    name: str | None
    filename: str | None
    content_type: str | None


def read_part_headers(section: bytes) -> PartHeaders:
    """The name, filename and media type from a header section (its lines, without the blank
    line that ends it), Content-Type before or after Content-Disposition."""
    try:
        text = section.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedMultipart("a part header is not valid UTF-8") from None
    name: str | None = None
    filename: str | None = None
    content_type: str | None = None
    for line in text.split("\r\n"):
        if "\r" in line or "\n" in line:
            raise MalformedMultipart("a part header line holds a bare CR or LF")
        header, colon, value = line.partition(":")
        header = header.strip().lower()
        if not colon:
            continue
        if header == "content-disposition":
            name, filename = disposition_names(value)
        elif header == "content-type":
            content_type = value.split(";", 1)[0].strip().lower()
    return PartHeaders(name, filename, content_type)


def disposition_names(value: str) -> tuple[str | None, str | None]:
    """`name` and `filename` of a Content-Disposition value (`form-data; name=...`), decoded.

    `filename*=` (RFC 5987, which RFC 7578 tells senders not to use) wins over `filename=`.
    """
    params = disposition_params(value)
    filename = params.get("filename")
    if "filename*" in params:
        extended = decode_ext_value(params["filename*"])
        if extended is not None:
            filename = extended
    return params.get("name"), filename


def disposition_params(value: str) -> dict[str, str]:
    """The parameters after the disposition type, names lowercased, values decoded by
    decode_value (`filename*` left as sent); the last of a repeated name counts."""
    params: dict[str, str] = {}
    _, _, rest = value.partition(";")
    pos = 0
    while pos < len(rest):
        key_end = rest.find("=", pos)
        if key_end < 0:
            break  # a parameter without a value (or a trailing `;`): nothing more to read
        next_semicolon = rest.find(";", pos)
        if 0 <= next_semicolon < key_end:
            pos = next_semicolon + 1  # a parameter without a value: skipped
            continue
        key = rest[pos:key_end].strip().lower()
        start = key_end + 1
        while start < len(rest) and rest[start] in " \t":
            start += 1
        if start < len(rest) and rest[start] == '"':
            closing = _CLOSING_QUOTE.search(rest, start + 1)
            if closing is None:
                raise MalformedMultipart("a part's Content-Disposition has an unclosed quote")
            raw, quoted = rest[start + 1 : closing.start()], True
            pos = closing.end()
        else:
            end = rest.find(";", start)
            end = len(rest) if end < 0 else end
            raw, quoted = rest[start:end].strip(), False
            pos = end + 1
        params[key] = raw if key.endswith("*") else decode_value(raw, quoted=quoted)
    return params


def decode_value(raw: str, *, quoted: bool = True) -> str:
    """A parameter value as sent between its quotes (or unquoted), decoded.

    A quoted value with a `"` inside can only be backslash-escaped (old curl): `\\"` and `\\\\`
    are unescaped. Any other value is read as browsers write it: `%22`, `%0D` and `%0A`
    become `"`, CR and LF, and nothing else changes.
    """
    if quoted and '"' in raw:
        return _BACKSLASH_ESCAPE.sub(r"\1", raw)
    return _PERCENT_ESCAPE.sub(lambda m: _PERCENT_DECODED[m.group(1)], raw)


def decode_ext_value(raw: str) -> str | None:
    """An RFC 5987 ext-value (`UTF-8''na%C3%AFve.txt`) decoded, bytes that are not valid in
    its charset as U+FFFD; None if it is not one, or names a charset other than UTF-8 and
    ISO-8859-1 (no charset: UTF-8)."""
    match = _EXT_VALUE.fullmatch(raw.strip())
    if match is None:
        return None
    charset = _EXT_CHARSETS.get(match.group(1).lower())
    if charset is None:
        return None
    return urllib.parse.unquote(match.group(2), encoding=charset, errors="replace")
