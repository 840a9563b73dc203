"""Hostile multipart shapes through the app, against moto on loopback (../shared/TESTING.md,
"Broken or hostile multipart"): each answer is the documented status and JSON error (clear),
nothing is left in storage (clean), and the app keeps serving (alive).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from app.client.formbody import FormField
from app.settings import Settings
from harness.forms import BOUNDARY, FilePart, chunked, content_type, multipart_body, part_head
from harness.store import Bucket, sha256
from tests.integration.conftest import PART, app_client, assert_error

pytestmark = pytest.mark.anyio

KiB = 1024
MiB = 1024 * KiB
B = BOUNDARY.encode()
CLOSING = f"\r\n--{BOUNDARY}--\r\n".encode()


class CountingBody:
    """A streamed (chunked) request body that records how many bytes the app pulled."""

    def __init__(self, body: bytes, chunk: int = 16 * KiB) -> None:
        self.body = body
        self.chunk = chunk
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self.body), self.chunk):
            piece = self.body[start : start + self.chunk]
            self.pulled += len(piece)
            yield piece


async def post(http: httpx.AsyncClient, body: Any) -> httpx.Response:
    content = chunked(body) if isinstance(body, bytes) else body
    return await http.post("/uploads", content=content, headers={"content-type": content_type()})


async def assert_alive(http: httpx.AsyncClient, bucket: Bucket) -> None:
    """/healthz answers and the next upload is stored intact."""
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    data = b"after" * 1000
    response = await post(http, multipart_body([FilePart("file", "after.bin", data)]))
    assert response.status_code == 201, response.text
    bucket.assert_intact(response.json()["files"][0], data)


# --- the boundary only in the preamble ----------------------------------------------------

PREAMBLES = {
    # The boundary's text, but never at the start of a line: not a delimiter anywhere.
    "mid-line": b"see --" + B + b" for details\r\nand nothing else\r\n",
    "mid-line-then-part": b"xx--" + B + b'\r\nContent-Disposition: form-data; name="f"; '
    b'filename="a.bin"\r\n\r\nabc' + CLOSING,
    # Only a closing delimiter, after some preamble: a form with no parts at all.
    "closing-only": b"preamble\r\n--" + B + b"--\r\n",
}


@pytest.mark.parametrize("body", PREAMBLES.values(), ids=PREAMBLES.keys())
async def test_boundary_only_in_the_preamble_is_400(
    client: httpx.AsyncClient, bucket: Bucket, body: bytes
) -> None:
    assert_error(await post(client, body), 400, "malformed_multipart")
    bucket.assert_clean()
    await assert_alive(client, bucket)


async def test_a_preamble_before_a_valid_form_is_refused_clearly(
    client: httpx.AsyncClient, bucket: Bucket
) -> None:
    """RFC 2046 allows a preamble before the first delimiter; streaming-form-data does not
    (it wants the body to start with `--boundary`), so such a body is refused as malformed.
    No browser, curl or httpx sends one. Pinned so that a change is noticed: if the app
    starts accepting preambles, this should become a 201 with the file intact."""
    data = b"payload"
    body = b"This is a preamble.\r\n" + multipart_body([FilePart("file", "a.bin", data)])
    assert_error(await post(client, body), 400, "malformed_multipart")
    bucket.assert_clean()
    await assert_alive(client, bucket)


# --- huge header sections, lines that never end -------------------------------------------

HEAD = part_head(FilePart("file", "a.bin", b""))[:-2]  # without the blank line that ends it
HUGE_HEADERS = {
    # 64 KiB of header section in 4,000 ordinary lines (UPLOAD_MAX_PART_HEADER_SIZE 16 KiB).
    "many-lines": HEAD + b"".join(b"X-Pad-%04d: v\r\n" % i for i in range(4000)) + b"\r\nabc",
    "one-long-line": HEAD + b"X-Pad: " + b"a" * (256 * KiB) + b"\r\n\r\nabc",
    # No CR LF ever: the parser would buffer it all (see app/forms/multipart.py).
    "unending-header-line": HEAD + b"X-Pad: " + b"a" * (4 * MiB),
    "unending-boundary-line": b"--" + B + b"x" * (4 * MiB),
    "unending-disposition": b"--"
    + B
    + b'\r\nContent-Disposition: form-data; name="'
    + b"n" * (4 * MiB),
}


@pytest.mark.parametrize("body", HUGE_HEADERS.values(), ids=HUGE_HEADERS.keys())
async def test_huge_header_sections_are_refused_early(
    settings_for: Callable[..., Settings], bucket: Bucket, body: bytes
) -> None:
    counting = CountingBody(body + CLOSING)
    pulled_at_answer: list[int] = []
    answer = lambda: pulled_at_answer.append(counting.pulled)  # noqa: E731
    async with app_client(settings_for(), on_answer=answer) as client:
        assert_error(await post(client, counting), 400, "part_headers_too_large")
        # Refused once past the limit (16 KiB and the parser's slack), not after the whole
        # body (which is read after the answer, and dropped: app/lingering.py).
        assert pulled_at_answer[0] <= 64 * KiB, pulled_at_answer
        bucket.assert_clean()
        await assert_alive(client, bucket)


# --- tens of thousands of tiny parts ------------------------------------------------------

TINY = 20_000


TINY_FORMS = {
    # Empty-filename parts (a form with many unused file inputs) store nothing but count: the
    # default UPLOAD_MAX_PARTS (1000) ends the request long before its end.
    "parts": ([FilePart("f", "", b"") for _ in range(TINY)], "too_many_parts"),
    "fields": ([FormField(f"f{i}", "v") for i in range(TINY)], "too_many_fields"),
}


@pytest.mark.parametrize(("parts", "code"), TINY_FORMS.values(), ids=TINY_FORMS.keys())
async def test_tens_of_thousands_of_tiny_parts_hit_a_limit(
    settings_for: Callable[..., Settings], bucket: Bucket, parts: list[Any], code: str
) -> None:
    counting = CountingBody(multipart_body([*parts, FilePart("file", "a.bin", b"x")]))
    pulled_at_answer: list[int] = []
    answer = lambda: pulled_at_answer.append(counting.pulled)  # noqa: E731
    async with app_client(settings_for(), on_answer=answer) as client:
        assert_error(await post(client, counting), 400, code)
        assert pulled_at_answer[0] < len(counting.body) // 4
        bucket.assert_clean()
        await assert_alive(client, bucket)


async def test_tens_of_thousands_of_tiny_parts_within_raised_limits_are_stored(
    settings_for: Callable[..., Settings], bucket: Bucket
) -> None:
    """Limits raised for the test: 5,000 empty file parts and 5,000 one-byte fields of one
    name around a real file, in small chunks. The file is intact, the fields all arrive.
    (Fewer than above: each part costs the parser's Python header parsing about 0.45 ms,
    docs/testing.md; the default UPLOAD_MAX_PARTS is what bounds that cost in production.)"""
    data = bytes(range(256)) * 64
    many = TINY // 4
    parts: list[Any] = [FilePart("unused", "", b"") for _ in range(many)]
    parts += [FilePart("file", "a.bin", data)]
    parts += [FormField("tag", str(i % 10)) for i in range(many)]
    body = multipart_body(parts)
    settings = settings_for(max_parts=2 * many + 1, max_fields=many)
    async with app_client(settings) as http:
        response = await post(http, CountingBody(body, chunk=4 * KiB))
        assert response.status_code == 201, response.text
        answer = response.json()
        assert len(answer["files"]) == 1
        bucket.assert_intact(answer["files"][0], data)
        assert answer["fields"] == {"tag": [str(i % 10) for i in range(many)]}
        assert (await http.get("/healthz")).status_code == 200
    assert len(bucket.keys()) == 1


# --- duplicate field names ----------------------------------------------------------------


async def test_duplicate_field_names_keep_every_file_and_value(
    client: httpx.AsyncClient, bucket: Bucket
) -> None:
    """`curl -F file=@a -F file=@b`, even with the same filename twice, plus text fields named
    like the files and like each other: every file gets its own key, every value is kept."""
    first, second = b"first" * 1000, bytes(range(256)) * (2 * PART // 256 + 1)
    body = multipart_body(
        [
            FormField("file", "a text field named like the files"),
            FilePart("file", "same.bin", first),
            FormField("note", "one"),
            FilePart("file", "same.bin", second),
            FormField("note", "two"),
            FormField("note", "three"),
        ]
    )
    response = await post(client, body)
    assert response.status_code == 201, response.text
    answer = response.json()
    files = answer["files"]
    assert [(f["field"], f["filename"]) for f in files] == [("file", "same.bin")] * 2
    assert files[0]["key"] != files[1]["key"]
    bucket.assert_intact(files[0], first)
    bucket.assert_intact(files[1], second)
    assert sorted(bucket.keys()) == sorted(f["key"] for f in files)
    assert answer["fields"] == {
        "file": "a text field named like the files",
        "note": ["one", "two", "three"],
    }


FIRST, SECOND = b"first" * 100, b"second" * 100
FIRST_FILE, SECOND_FILE = FilePart("file", "a.bin", FIRST), FilePart("file", "b.bin", SECOND)


def digest_of(data: bytes) -> FormField:
    """The client's SHA-256 of a file of the field `file`."""
    return FormField("file.sha256", sha256(data))


async def test_duplicate_file_fields_each_with_its_own_digest(
    client: httpx.AsyncClient, bucket: Bucket
) -> None:
    body = multipart_body([digest_of(FIRST), FIRST_FILE, digest_of(SECOND), SECOND_FILE])
    response = await post(client, body)
    # Digests pair with the files of their field name in order.
    assert response.status_code == 201, response.text
    files = response.json()["files"]
    bucket.assert_intact(files[0], FIRST)
    bucket.assert_intact(files[1], SECOND)


async def test_one_digest_for_two_files_of_a_field_is_400(
    client: httpx.AsyncClient, bucket: Bucket
) -> None:
    response = await post(client, multipart_body([digest_of(FIRST), FIRST_FILE, SECOND_FILE]))
    assert_error(response, 400, "invalid_digest")
    bucket.assert_clean()


# --- CR/LF-heavy payloads: the parser's slow path, end to end -----------------------------


async def test_crlf_heavy_file_of_16_mib_is_stored_intact(
    client: httpx.AsyncClient, bucket: Bucket
) -> None:
    """A file of CR LF and near-misses of the delimiter (tests/unit/test_parser_cost.py bounds
    its parsing cost), streamed in 64 KiB chunks: every byte stored, none taken for a
    boundary, in 4 parts of 5 MiB."""
    units = [b"\r\n", b"\r", b"-", b"\r\n--", b"\r\n--" + B[:1], b"\r\n--" + B[:-1]]
    block = b"".join(unit * 50 for unit in units)
    size = 16 * MiB
    data = (block * (size // len(block) + 1))[:size]
    assert b"\r\n--" + B not in data  # never the delimiter itself
    response = await post(client, multipart_body([FilePart("file", "crlf.bin", data)]))
    assert response.status_code == 201, response.text
    stored = response.json()["files"][0]
    assert (stored["strategy"], stored["parts"]) == ("multipart", 4)
    bucket.assert_intact(stored, data)
