"""app/storage/sendpath.py: PartBody as botocore sees it, PartPayload as aiohttp sends it.

Each test pins one thing the module relies on in botocore or aiohttp; an upgrade that
changes it fails here (tests/integration/test_send_path.py sends through the real stack).
"""

from __future__ import annotations

import io

import pytest
from aiohttp.payload import PAYLOAD_REGISTRY
from botocore.awsrequest import AWSRequest
from botocore.utils import determine_content_length

from app.storage.sendpath import PartBody, PartPayload

pytestmark = pytest.mark.anyio


class RecordingWriter:
    """What aiohttp's StreamWriter.write is called with (the payload's whole interface)."""

    def __init__(self) -> None:
        self.chunks: list[bytes | bytearray | memoryview] = []

    async def write(self, chunk: bytes | bytearray | memoryview) -> None:
        self.chunks.append(chunk)


def test_aiohttp_sends_a_part_body_as_a_part_payload() -> None:
    payload = PAYLOAD_REGISTRY.get(PartBody(memoryview(bytearray(b"abc"))))
    assert isinstance(payload, PartPayload)
    assert payload.size == 3


async def test_the_payload_writes_the_part_memory_itself_in_one_write() -> None:
    memory = bytearray(b"x" * 1000)
    payload = PartPayload(PartBody(memoryview(memory)))
    writer = RecordingWriter()
    await payload.write_with_length(writer, None)  # type: ignore[arg-type]
    assert len(writer.chunks) == 1 and len(writer.chunks[0]) == 1000
    memory[0:1] = b"y"  # no copy: the written chunk is the part's own memory
    assert bytes(writer.chunks[0][:2]) == b"yx"


async def test_the_payload_writes_from_where_the_body_was_when_it_was_made_every_time() -> None:
    """aiohttp resends an idempotent request's payload by itself when a kept-alive
    connection turns out closed; botocore rewinds the body only for its own retries."""
    body = PartBody(memoryview(bytearray(b"0123456789")))
    body.seek(4)
    payload = PartPayload(body)
    first, second = RecordingWriter(), RecordingWriter()
    await payload.write_with_length(first, None)  # type: ignore[arg-type]
    await payload.write_with_length(second, 3)  # type: ignore[arg-type]
    assert [bytes(c) for c in first.chunks] == [b"456789"]
    assert [bytes(c) for c in second.chunks] == [b"456"]
    assert body.tell() == 10


async def test_an_empty_part_writes_nothing() -> None:
    writer = RecordingWriter()
    await PartPayload(PartBody(memoryview(b""))).write_with_length(writer, None)  # type: ignore[arg-type]
    assert writer.chunks == []


def test_botocore_sizes_the_body_by_its_length_and_rewinds_it() -> None:
    body = PartBody(memoryview(b"abcdef"))
    assert determine_content_length(body) == 6
    assert determine_content_length(PartBody(memoryview(b""))) == 0
    prepared = AWSRequest(method="PUT", url="http://s3.test/b/k", data=body).prepare()
    assert prepared.body is body and prepared.headers["Content-Length"] == "6"
    body.read()
    prepared.reset_stream()  # before each of botocore's own retries
    assert body.tell() == 0


def test_botocore_reads_it_like_a_file() -> None:
    """For a checksum or payload signature botocore computes itself."""
    body = PartBody(memoryview(b"abcdef"))
    assert body.read(4) == b"abcd" and body.read(4) == b"ef" and body.read(4) == b""
    assert body.seek(-2, io.SEEK_END) == 4 and body.read() == b"ef"
    assert body.seek(1) == 1 and body.seek(2, io.SEEK_CUR) == 3 and body.tell() == 3
    with pytest.raises(ValueError):
        body.seek(-1)


def test_a_body_is_not_an_io_base_so_aiobotocore_passes_it_unwrapped() -> None:
    assert not isinstance(PartBody(memoryview(b"")), io.IOBase)


def test_close_releases_the_view() -> None:
    view = memoryview(bytearray(b"abc"))
    PartBody(view).close()
    with pytest.raises(ValueError):
        view.tobytes()
