"""ASGI request messages on a clock the test moves: silences pass on the event loop's own
`time`, not in real time, so a loaded machine cannot make a test pass or fail."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest


class Clock:
    """The running loop's clock, moved only by `silence`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = 1000.0
        monkeypatch.setattr(asyncio.get_running_loop(), "time", lambda: self.now)

    async def silence(self, seconds: float) -> None:
        """`seconds` pass; the loop then runs what fell due (the idle timer among them)."""
        self.now += seconds
        for _ in range(3):
            await asyncio.sleep(0)


def messages(clock: Clock, *items: dict[str, Any] | float) -> Callable[[], Awaitable[Any]]:
    """An ASGI receive that answers `items` in order; a number is a silence of that many
    seconds before the next message."""
    queue = list(items)

    async def receive() -> dict[str, Any]:
        item = queue.pop(0)
        while not isinstance(item, dict):
            await clock.silence(item)
            item = queue.pop(0)
        return item

    return receive


def body(data: bytes, more: bool = True) -> dict[str, Any]:
    return {"type": "http.request", "body": data, "more_body": more}
