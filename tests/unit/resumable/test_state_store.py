"""Reading state.json from a store that replaces objects in place (`rclone serve s3` hands
out a torn copy while a write is under way): a torn read is read again, never taken for a
missing upload. The torn copies are injected by a stub client, as no real server produces
one on demand."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from app.errors import StorageFailed
from app.resumable import state as state_module
from app.resumable.state import ResumableState, StateStore
from tests.unit.resumable.test_state import state

pytestmark = pytest.mark.anyio


class Body:
    def __init__(self, raw: bytes | Exception) -> None:
        self.raw = raw

    async def __aenter__(self) -> Body:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def read(self) -> bytes:
        if isinstance(self.raw, Exception):
            raise self.raw
        return self.raw


class RaisedByGetObject(Exception):
    """Wraps what get_object itself raises (botocore may read a small body in the call)."""


class Client:
    """get_object answers the bodies given, one per call."""

    def __init__(self, bodies: list[bytes | Exception]) -> None:
        self._bodies: Iterator[bytes | Exception] = iter(bodies)
        self.calls = 0

    async def get_object(self, **kwargs: Any) -> dict[str, Any]:
        self.calls += 1
        body = next(self._bodies)
        if isinstance(body, RaisedByGetObject):
            raise body.args[0]
        return {"Body": Body(body), "ETag": '"e"'}


class Storage:
    def __init__(self, client: Client) -> None:
        self.client = client
        self.bucket = "b"


@pytest.fixture(autouse=True)
def no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state_module, "TORN_READ_PAUSE", 0.0)


async def test_a_torn_read_is_read_again() -> None:
    whole = state().to_json()
    torn = aiohttp.ClientPayloadError("Response payload is not completed")
    client = Client(
        [RaisedByGetObject(torn), ConnectionError("payload is not completed"), whole[:40], whole]
    )
    store = StateStore(Storage(client), conditional_writes=True)  # type: ignore[arg-type]
    loaded = await store.load("0" * 32)
    assert loaded is not None and loaded[0] == ResumableState.from_json(whole)
    assert client.calls == 4


async def test_a_state_that_stays_torn_is_a_storage_failure_not_a_missing_upload() -> None:
    client = Client([b'{"id": "'] * state_module.TORN_READ_ATTEMPTS)
    store = StateStore(Storage(client), conditional_writes=True)  # type: ignore[arg-type]
    with pytest.raises(StorageFailed):
        await store.load("0" * 32)


async def test_a_state_of_another_version_is_unknown() -> None:
    client = Client([state(version=99).to_json()])
    store = StateStore(Storage(client), conditional_writes=True)  # type: ignore[arg-type]
    assert await store.load("0" * 32) is None
