"""The real send path (aiobotocore, aiohttp, a socket to moto) sends each part from the part
buffer's own memory, uncopied, in one write (app/storage/sendpath.py).

Spies on aiohttp's StreamWriter and on PartBuffer.sending only to see what is written where;
nothing is replaced.
"""

from __future__ import annotations

import contextlib
import ctypes
import random
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from aiohttp.http_writer import StreamWriter

from app.settings import Settings
from app.storage.buffers import PartBuffer
from app.storage.sendpath import PartBody
from app.storage.session import open_storage
from harness.store import Bucket
from tests.integration.conftest import PART

pytestmark = pytest.mark.anyio


def address(view: memoryview) -> int:
    """Where a writable view's bytes are in memory."""
    return ctypes.addressof(ctypes.c_char.from_buffer(view))


async def test_each_part_is_written_from_its_buffer_in_one_write(
    settings_for: Callable[..., Settings], bucket: Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    parts: list[tuple[int, int]] = []  # (address, size) of each part body sent
    writes: list[tuple[int | None, int]] = []  # (address if a writable view, size) per write
    held: list[memoryview] = []  # keeps the written views alive, so addresses stay unique

    def record(chunk: Any) -> None:
        if isinstance(chunk, memoryview) and not chunk.readonly:
            held.append(chunk)
            writes.append((address(chunk), chunk.nbytes))
        else:
            writes.append((None, len(chunk)))

    real_write, real_writelines = StreamWriter._write, StreamWriter._writelines

    def spy_write(self: StreamWriter, chunk: Any) -> None:
        record(chunk)
        real_write(self, chunk)

    def spy_writelines(self: StreamWriter, chunks: Iterable[Any]) -> None:
        chunks = list(chunks)
        for chunk in chunks:
            record(chunk)
        real_writelines(self, chunks)

    real_sending = PartBuffer.sending

    @contextlib.contextmanager
    def spy_sending(self: PartBuffer) -> Iterator[PartBody]:
        with real_sending(self) as body:
            view = body.view(0)
            body.seek(0)
            parts.append((address(view), view.nbytes))
            view.release()
            yield body

    monkeypatch.setattr(StreamWriter, "_write", spy_write)
    monkeypatch.setattr(StreamWriter, "_writelines", spy_writelines)
    monkeypatch.setattr(PartBuffer, "sending", spy_sending)

    data = random.Random(5).randbytes(2 * PART + 1234)
    settings = settings_for(s3_provider="local", s3_payload_signing="off")
    async with open_storage(settings) as storage:
        upload = storage.open_upload("sendpath/a.bin", "application/octet-stream")
        for start in range(0, len(data), 100_000):
            await upload.write(data[start : start + 100_000])
        stored = await upload.commit()

    assert stored.parts == 3
    bucket.assert_intact(stored.__dict__, data)
    assert [size for _, size in parts] == [PART, PART, 1234]
    body_writes = [w for w in writes if w[1] >= 1234]
    assert body_writes == parts  # each part once, from its own memory, in one write
    held.clear()
