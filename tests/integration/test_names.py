"""Hostile and unusual filenames through the app, against moto on loopback (../shared/
TESTING.md, "Names and keys"): every file is stored intact under a server-made key inside the
prefix, and the name the client sent comes back in the response. app/forms/keys.py's rules are
tested in tests/unit/test_keys.py; here the names travel as real Content-Disposition bytes,
escaped as browsers and curl escape them, through the parser.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any
from urllib.parse import quote, unquote

import httpx
import pytest

from app.forms.keys import MAX_ENCODED_NAME, MAX_NAME_BYTES, ORIGINAL_NAME_KEY
from harness.forms import BOUNDARY, FilePart, chunked, content_type, multipart_body
from harness.store import Bucket
from tests.integration.conftest import assert_error

pytestmark = pytest.mark.anyio

KEY_RE = re.compile(r"^uploads/[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}/")
DATA = b"name test \r\n--" * 100


def body_with_disposition(params: bytes, data: bytes = DATA) -> bytes:
    """A one-file form whose Content-Disposition parameters are exactly `params`, written raw:
    for parameters no encoder writes (raw line breaks, RFC 5987 `filename*=`)."""
    return (
        f"--{BOUNDARY}\r\n".encode()
        + b'Content-Disposition: form-data; name="file"; '
        + params
        + b"\r\nContent-Type: application/octet-stream\r\n\r\n"
        + data
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


def named(name: str) -> bytes:
    """A one-file form naming the file `name`, encoded as browsers and curl >= 7.81 do."""
    return multipart_body([FilePart("file", name, DATA)])


async def upload(http: httpx.AsyncClient, body: bytes) -> httpx.Response:
    return await http.post(
        "/uploads", content=chunked(body), headers={"content-type": content_type()}
    )


async def stored_as(
    http: httpx.AsyncClient, bucket: Bucket, body: bytes, name: str
) -> dict[str, Any]:
    """Upload the one-file form: 201, the name answered as sent, DATA stored intact; what
    the answer says about the file."""
    response = await upload(http, body)
    assert response.status_code == 201, response.text
    stored: dict[str, Any] = response.json()["files"][0]
    assert stored["filename"] == name
    bucket.assert_intact(stored, DATA)
    return stored


def original_name(bucket: Bucket, key: str) -> str:
    """The client's filename as the object's metadata keeps it (percent-encoded ASCII)."""
    metadata = {k.lower(): v for k, v in bucket.head(key)["Metadata"].items()}
    encoded = metadata[ORIGINAL_NAME_KEY]
    assert encoded.isascii() and encoded.isprintable()
    return unquote(encoded)


def assert_safe_key(key: str) -> str:
    """The key is `uploads/<uuid>/<one safe segment>`; that segment."""
    match = KEY_RE.match(key)
    assert match is not None, key
    name = key[match.end() :]
    assert name and "/" not in name and "\\" not in name
    assert name not in (".", "..") and not name.startswith(".") and not name.endswith(".")
    assert not any(
        unicodedata.category(ch) in ("Cc", "Cf", "Cn", "Zl", "Zp")
        for ch in name
        if ch not in "\u200c\u200d"
    ), ascii(name)
    assert len(name.encode()) <= MAX_NAME_BYTES
    assert name == unicodedata.normalize("NFC", name)
    return name


#: (name sent, the key's last segment)
NAMES = {
    "dot-dot-slash": ("../../etc/passwd", "passwd"),
    "dot-dot-backslash": ("..\\..\\boot.ini", "boot.ini"),
    "only-dots": ("../..", "file"),
    "absolute": ("/etc/shadow", "shadow"),
    "windows-drive": ("C:\\Windows\\System32\\cmd.exe", "cmd.exe"),
    "unc": ("\\\\server\\share\\x.txt", "x.txt"),
    "nul": ("a\x00b.txt", "ab.txt"),
    "control": ("bell\x07\x1b[31mred.txt", "bell[31mred.txt"),
    "right-to-left-override": ("invoice\u202egpj.exe", "invoicegpj.exe"),
    "bidi-isolates": ("a\u2066b\u2069c\u200fd.txt", "abcd.txt"),
    "quotes": ('say "hi".txt', 'say "hi".txt'),
    # A backslash is a path separator to keys.py (Windows paths): the key keeps what follows.
    "quotes-and-backslash": ('my "best" photo\\x.txt', "x.txt"),
    "percent": ("100% sure %41.txt", "100% sure %41.txt"),
    "emoji": ("😀 ✈ party 🎉.png", "😀 ✈ party 🎉.png"),
    "emoji-zwj": ("👩\u200d💻.txt", "👩\u200d💻.txt"),
    "cjk-and-rtl-script": ("日本語 עברית.txt", "日本語 עברית.txt"),
    "decomposed": ("cafe\u0301.txt", "café.txt"),
    "hidden": ("...hidden. ", "hidden"),
}


@pytest.mark.parametrize(("name", "segment"), NAMES.values(), ids=NAMES.keys())
async def test_hostile_names_stay_inside_the_prefix(
    client: httpx.AsyncClient, bucket: Bucket, name: str, segment: str
) -> None:
    stored = await stored_as(client, bucket, named(name), name)  # the original answered...
    assert original_name(bucket, stored["key"]) == name  # ...and safely in the metadata
    assert assert_safe_key(stored["key"]) == segment
    assert bucket.keys() == [stored["key"]]


@pytest.mark.parametrize(
    "name",
    ["a" * 1020 + ".txt", "é" * 510 + ".pdf", "😀" * 255 + ".png", "b" * 1024],
    ids=["ascii", "two-byte", "emoji", "no-extension"],
)
async def test_one_kilobyte_names_are_cut_keeping_the_extension(
    client: httpx.AsyncClient, bucket: Bucket, name: str
) -> None:
    assert len(name.encode()) >= 1020
    stored = await stored_as(client, bucket, named(name), name)
    segment = assert_safe_key(stored["key"])
    assert len(segment.encode()) > MAX_NAME_BYTES - 4  # cut, not dropped
    if "." in name:
        assert segment.endswith(name[name.rindex(".") :])
    assert name.startswith(segment.rsplit(".", 1)[0])  # a prefix of the original, whole chars
    kept = original_name(bucket, stored["key"])  # the metadata keeps as much as fits
    assert name.startswith(kept) and len(quote(kept, safe="")) <= MAX_ENCODED_NAME
    assert len(kept) >= len(name) // 10


async def test_crlf_as_browsers_send_it_is_kept_as_text(
    client: httpx.AsyncClient, bucket: Bucket
) -> None:
    """Browsers send CR LF in a name as %0D%0A (and `"` as %22): never a header break; the
    name comes back and into the metadata as it was, and into the key without the controls."""
    name = 'evil\r\nX-Injected: 1".txt'
    body = named(name)
    assert b'filename="evil%0D%0AX-Injected: 1%22.txt"' in body
    stored = await stored_as(client, bucket, body, name)
    assert original_name(bucket, stored["key"]) == name
    assert assert_safe_key(stored["key"]) == 'evilX-Injected: 1".txt'


@pytest.mark.parametrize(
    "params",
    [b'filename="a\rb.txt"', b'filename="a\r\nX-Evil: 1.txt"', b'filename="a\nb.txt"'],
    ids=["bare-cr", "crlf", "bare-lf"],
)
async def test_raw_line_breaks_in_a_name_cannot_inject_anything(
    client: httpx.AsyncClient, bucket: Bucket, params: bytes
) -> None:
    """A raw CR or LF inside the quoted name breaks the header line: either the form is
    refused as malformed (clear, clean), or the name ends at the break; never a header, a
    control character or a path in the key."""
    response = await upload(client, body_with_disposition(params))
    if response.status_code == 400:
        assert response.json()["error"]["code"] == "malformed_multipart"
        bucket.assert_clean()
        return
    assert response.status_code == 201, response.text
    stored = response.json()["files"][0]
    assert "\r" not in stored["filename"] and "\n" not in stored["filename"]
    assert "Evil" not in assert_safe_key(stored["key"])
    bucket.assert_intact(stored, DATA)


#: RFC 5987 / RFC 2231 `filename*=` (RFC 7578 says senders must not use it; some do).
EXTENDED = {
    "utf-8": (b"filename*=UTF-8''na%C3%AFve%20file.txt", "naïve file.txt", "naïve file.txt"),
    "iso-8859-1": (b"filename*=iso-8859-1''caf%E9.txt", "café.txt", "café.txt"),
    "no-charset": (b"filename*=''plain.txt", "plain.txt", "plain.txt"),
    "traversal": (b"filename*=UTF-8''..%2F..%2Fetc%2Fpasswd", "../../etc/passwd", "passwd"),
    "encoded-rlo": (b"filename*=UTF-8''x%E2%80%AEgpj.exe", "x\u202egpj.exe", "xgpj.exe"),
    "encoded-nul-crlf": (b"filename*=UTF-8''a%00%0D%0Ab.txt", "a\x00\r\nb.txt", "ab.txt"),
    "not-utf-8": (b"filename*=UTF-8''%FF%FE.txt", "\ufffd\ufffd.txt", "\ufffd\ufffd.txt"),
}


@pytest.mark.parametrize(("params", "name", "segment"), EXTENDED.values(), ids=EXTENDED.keys())
async def test_rfc5987_filenames_are_decoded_and_made_safe(
    client: httpx.AsyncClient, bucket: Bucket, params: bytes, name: str, segment: str
) -> None:
    stored = await stored_as(client, bucket, body_with_disposition(params), name)
    assert assert_safe_key(stored["key"]) == segment


async def test_filename_star_wins_over_filename(client: httpx.AsyncClient, bucket: Bucket) -> None:
    """As RFC 6266 says, whichever comes first; and it is made safe."""
    for params in (
        b"filename=\"../plain.txt\"; filename*=UTF-8''%2E%2E%2Fna%C3%AFve.txt",
        b"filename*=UTF-8''%2E%2E%2Fna%C3%AFve.txt; filename=\"../plain.txt\"",
    ):
        stored = await stored_as(client, bucket, body_with_disposition(params), "../naïve.txt")
        assert assert_safe_key(stored["key"]) == "naïve.txt"


async def test_an_empty_extended_filename_is_no_file(
    client: httpx.AsyncClient, bucket: Bucket
) -> None:
    """`filename*=UTF-8''` decodes to no filename at all: the part is a text field."""
    response = await upload(client, body_with_disposition(b"filename*=UTF-8''"))
    assert_error(response, 400, "no_file")
    bucket.assert_clean()


async def test_the_raw_helper_writes_what_the_encoder_writes(
    client: httpx.AsyncClient, bucket: Bucket
) -> None:
    """Sanity check of body_with_disposition against the encoder the other tests use."""
    body = named("plain name.bin")
    assert body == body_with_disposition(b'filename="plain name.bin"')
    response = await upload(client, body)
    assert response.status_code == 201
    bucket.assert_intact(response.json()["files"][0], DATA)
