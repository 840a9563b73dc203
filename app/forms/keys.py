"""Object keys are made by the server: a fresh uuid and a sanitised form of the client's name."""

from __future__ import annotations

import re
import unicodedata
import urllib.parse
import uuid

from app.errors import InvalidKey

#: Longest sanitised filename, in UTF-8 bytes (S3 keys may be 1024 bytes in all).
MAX_NAME_BYTES = 200
_FALLBACK_NAME = "file"
#: White space (any script's) and dots at either end: hidden names and `..` games.
_ENDS = re.compile(r"^[\s.]+|[\s.]+$")


#: Joiners shape emoji sequences and Persian or Indic text; they cannot reorder or hide text.
_JOINERS = {"\u200c", "\u200d"}


def _keep(ch: str) -> bool:
    """Drop control, format (bidi overrides), unassigned, and line/paragraph separators."""
    category = unicodedata.category(ch)
    return ch in _JOINERS or not (category[0] == "C" or category in ("Zl", "Zp"))


def safe_filename(filename: str) -> str:
    """A readable name that cannot escape the key prefix or confuse a terminal.

    Keeps only the last path segment (`/` and `\\` both count), drops control, format
    (e.g. right-to-left override) and unassigned characters, normalises to NFC, trims dots
    and white space from the ends, and cuts the name to MAX_NAME_BYTES keeping its extension.
    """
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if _keep(ch))
    name = _ENDS.sub("", unicodedata.normalize("NFC", name))
    if not name:
        return _FALLBACK_NAME
    if len(name.encode()) > MAX_NAME_BYTES:
        stem, dot, ext = name.rpartition(".")
        if not dot or len(ext.encode()) > 16:
            stem, ext = name, ""
        room = MAX_NAME_BYTES - len(ext.encode()) - (1 if ext else 0)
        stem = stem.encode()[:room].decode(errors="ignore").rstrip(" .")
        name = f"{stem}.{ext}" if ext else stem
    return name or _FALLBACK_NAME


#: The object metadata entry holding the client's own filename (`x-amz-meta-original-filename`).
ORIGINAL_NAME_KEY = "original-filename"
#: S3 allows 2 KB of user metadata in all; the encoded name keeps well inside it.
MAX_ENCODED_NAME = 1024


def encoded_original_name(filename: str) -> str:
    """The filename exactly as the client sent it, percent-encoded UTF-8 (RFC 3986).

    Metadata travels as HTTP headers, which only carry ASCII safely; percent-encoding keeps
    every character (path segments, control characters, any script) recoverable with
    `urllib.parse.unquote`. A name too long to encode within MAX_ENCODED_NAME is cut at a
    character boundary.
    """
    encoded = urllib.parse.quote(filename, safe="")
    while len(encoded) > MAX_ENCODED_NAME:
        filename = filename[: max(len(filename) * MAX_ENCODED_NAME // len(encoded) - 1, 0)]
        encoded = urllib.parse.quote(filename, safe="")
    return encoded


#: Longest key a client may choose, in UTF-8 bytes (S3 allows 1024 with the prefix).
MAX_CLIENT_KEY_BYTES = 768


def client_object_key(prefix: str, requested: str) -> str:
    """`{prefix}{requested}` for UPLOAD_CLIENT_KEYS, if `requested` is a safe relative path.

    Each `/`-separated segment must survive safe_filename unchanged: no `..`, no empty or
    dot-ended segments, no control or bidi characters, no backslashes. Refused, not repaired:
    a caller that chooses a key must get exactly that key or an error.
    """
    segments = requested.split("/")
    if not requested or len(requested.encode()) > MAX_CLIENT_KEY_BYTES:
        raise InvalidKey(f"a key must be 1 to {MAX_CLIENT_KEY_BYTES} bytes of UTF-8")
    for segment in segments:
        if "\\" in segment or safe_filename(segment) != segment:
            raise InvalidKey(
                f"key {requested[:100]!r} has an unsafe segment {segment[:100]!r}: use "
                "printable names separated by single slashes, without . or .. segments"
            )
    return f"{prefix}{requested}"


def object_key(prefix: str, filename: str, unique: str | None = None) -> str:
    """`{prefix}{unique}/{safe filename}`: unique (a uuid4 unless given: a resumable
    upload's id), and inside the prefix whatever the name."""
    return f"{prefix}{unique or uuid.uuid4()}/{safe_filename(filename)}"
