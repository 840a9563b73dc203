"""app/body.py: the chunks of a body from ASGI messages, and the idle timeout, which counts
only time spent waiting for the client. tests/integration/test_client_gone.py stalls a real
client past it.

Silences here pass on a clock the test moves (the event loop's own `time`), not in real
time: a loaded machine cannot make a test pass or fail.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from starlette.requests import ClientDisconnect

from app.body import body_chunks
from app.errors import IdleTimeout
from tests.unit.asgi import Clock, body, messages

pytestmark = pytest.mark.anyio


async def collect(receive: Callable[[], Awaitable[dict[str, Any]]], idle: float) -> list[bytes]:
    return [chunk async for chunk in body_chunks(receive, idle)]


async def test_chunks_in_order_without_empty_ones(clock: Clock) -> None:
    receive = messages(clock, body(b"a"), body(b""), body(b"bc"), body(b"", more=False))
    assert await collect(receive, 5) == [b"a", b"bc"]


async def test_a_disconnect_is_client_disconnect(clock: Clock) -> None:
    with pytest.raises(ClientDisconnect):
        await collect(messages(clock, body(b"a"), {"type": "http.disconnect"}), 5)


async def test_a_silent_client_hits_the_idle_timeout(clock: Clock) -> None:
    receive = messages(clock, body(b"a"), 0.1, body(b"b"), 30, body(b"", more=False))
    with pytest.raises(IdleTimeout, match=r"no body bytes for 0\.2 s"):
        await collect(receive, 0.2)


async def test_short_silences_add_up_to_nothing(clock: Clock) -> None:
    """Each wait is timed on its own: five silences of 0.2 s pass a 0.25 s timeout."""
    items: list[dict[str, Any] | float] = []
    for _ in range(5):
        items += [0.2, body(b"x")]
    receive = messages(clock, *items, body(b"", more=False))
    assert await collect(receive, 0.25) == [b"x"] * 5


async def test_time_spent_away_from_receive_is_not_idle(clock: Clock) -> None:
    """The upload waiting for storage (backpressure) asks for no chunk: nothing is late."""
    chunks = body_chunks(messages(clock, body(b"a"), body(b"b"), body(b"", more=False)), 0.1)
    got = [await anext(chunks)]
    await clock.silence(30)  # storage is slow
    got += [chunk async for chunk in chunks]
    assert got == [b"a", b"b"]


async def test_someone_elses_cancellation_is_not_a_timeout(clock: Clock) -> None:
    never = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await never.wait()
        return body(b"")

    task = asyncio.ensure_future(collect(receive, 10))
    await clock.silence(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_no_timeout_when_it_is_zero(clock: Clock) -> None:
    receive = messages(clock, body(b"a"), 3600, body(b"", more=False))
    assert await collect(receive, 0) == [b"a"]
