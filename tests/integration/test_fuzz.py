"""Fuzzing the multipart stream against the real app (moto server mode behind it).

Valid bodies of random shape, then cut, spliced or flipped at random, sent in random chunk
sizes. Whatever arrives: never a 5xx, never an incomplete multipart upload left behind, no
object kept for a failed request, and on 201 every stored object is exactly what the
response says (and exactly what was sent when the body was not damaged).
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.client.formbody import FormField
from app.settings import Settings
from harness.forms import BOUNDARY, FilePart, chunked, content_type
from harness.store import Bucket, MiB
from tests.integration.conftest import app_client

DOCUMENTED = {201, 400, 408, 413, 415, 422}

contents = st.one_of(
    st.binary(max_size=300),
    st.lists(
        st.sampled_from([b"\r", b"\n", b"-", b"--", b"\r\n--", b"x", b"\xff"]), max_size=80
    ).map(b"".join),
)
names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=20)
parts = st.lists(
    st.one_of(
        st.builds(FilePart, st.sampled_from(["a", "b", "file"]), names, contents),
        st.builds(FormField, st.sampled_from(["t", "u"]), st.text(max_size=30)),
    ),
    min_size=0,
    max_size=5,
)
damage = st.one_of(
    st.none(),
    st.tuples(st.just("cut"), st.floats(0, 1)),
    st.tuples(st.just("insert"), st.floats(0, 1), st.binary(min_size=1, max_size=20)),
    st.tuples(st.just("flip"), st.floats(0, 1), st.integers(1, 255)),
)


def raw_body(parts: list[Any]) -> bytes:
    """The form with names and values written raw, never escaped as a browser or our client
    would: a quote, backslash or line break inside a name is part of what is fuzzed."""
    body = bytearray()
    for part in parts:
        body += f"--{BOUNDARY}\r\nContent-Disposition: form-data; ".encode()
        if isinstance(part, FilePart):
            body += f'name="{part.field}"; filename="{part.filename}"\r\n'.encode()
            body += f"Content-Type: {part.content_type}\r\n\r\n".encode() + part.data
        else:
            body += f'name="{part.name}"\r\n\r\n{part.value}'.encode()
        body += b"\r\n"
    return bytes(body + f"--{BOUNDARY}--\r\n".encode())


def damaged(body: bytes, how: Any) -> bytes:
    if how is None or not body:
        return body
    at = min(int(how[1] * len(body)), len(body) - 1)
    if how[0] == "cut":
        return body[:at]
    if how[0] == "insert":
        return body[:at] + how[2] + body[at:]
    return body[:at] + bytes([body[at] ^ how[2]]) + body[at + 1 :]


async def send(settings: Settings, body: bytes, chunk: int, stream: bool) -> Any:
    async with app_client(settings) as http:
        content: Any = chunked(body, chunk) if stream else body
        return await http.post(
            "/uploads", content=content, headers={"content-type": content_type()}
        )


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(parts=parts, how=damage, chunk=st.integers(1, 4096), stream=st.booleans())
def test_fuzzed_bodies_never_break_the_service(
    bucket: Bucket, parts: list[Any], how: Any, chunk: int, stream: bool
) -> None:
    settings_ = Settings(
        s3_bucket=bucket.name,
        s3_endpoint_url=bucket.endpoint,
        s3_addressing_style="path",
        part_size=5 * MiB,
        s3_max_attempts=1,
    )
    original = raw_body(parts)
    body = damaged(original, how)
    response = asyncio.run(send(settings_, body, chunk, stream))

    assert response.status_code in DOCUMENTED, response.text
    assert bucket.incomplete_uploads() == []
    if response.status_code != 201:
        assert response.json()["error"]["code"]
        assert bucket.keys() == []
        return
    files = response.json()["files"]
    sent_files = [p for p in parts if isinstance(p, FilePart) and p.filename]
    for stored in files:
        data = bucket.read(stored["key"])
        assert hashlib.sha256(data).hexdigest() == stored["sha256"]
        assert len(data) == stored["size"]
    # A name with a quote, backslash or line break is written raw here (not escaped as a
    # browser would), so the parser may read another name, or none: the file then counts as
    # "no file chosen". Only bodies whose names are unambiguous have a known file list.
    unambiguous = all(not set('"\\\r\n') & set(p.filename) for p in sent_files)
    if body == original and unambiguous:
        assert [f["size"] for f in files] == [len(p.data) for p in sent_files]
        assert [f["sha256"] for f in files] == [
            hashlib.sha256(p.data).hexdigest() for p in sent_files
        ]
    for stored in files:  # each example starts from an empty bucket
        bucket.s3.delete_object(Bucket=bucket.name, Key=stored["key"])
