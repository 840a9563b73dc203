"""app/lingering.py: the answer goes out first, then the rest of the body is read and dropped
within its bounds, and only then is the response complete. tests/e2e/test_refusals.py tries
it through nginx and curl; tests/integration/test_lingering.py pins what uvicorn does.

Time passes on the clock the test moves (tests/unit/asgi.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import Message, Receive, Scope, Send

from app.lingering import (
    CountOpenRequests,
    LingeringResponse,
    OpenRequests,
    discard_body,
    waits_for_continue,
)
from tests.unit.asgi import Clock, body, messages

pytestmark = pytest.mark.anyio

DISCONNECT = {"type": "http.disconnect"}


async def test_reads_to_the_end_of_the_body(clock: Clock) -> None:
    receive = messages(clock, body(b"a" * 10), body(b"b" * 5), body(b"", more=False))
    assert await discard_body(receive, seconds=5, max_bytes=1000) == 15


async def test_stops_when_the_client_goes_away(clock: Clock) -> None:
    receive = messages(clock, body(b"a" * 10), DISCONNECT)
    assert await discard_body(receive, seconds=5, max_bytes=1000) == 10


async def test_stops_once_max_bytes_were_read(clock: Clock) -> None:
    # A third receive() would find no message and fail the test.
    receive = messages(clock, body(b"a" * 600), body(b"b" * 600))
    assert await discard_body(receive, seconds=5, max_bytes=1000) == 1200


async def test_stops_after_seconds_even_while_bytes_keep_coming(clock: Clock) -> None:
    receive = messages(clock, body(b"a"), 2.0, body(b"b"), 2.0, body(b"c"), 2.0, body(b"d"))
    assert await discard_body(receive, seconds=5, max_bytes=1000) == 3


async def test_zero_bytes_reads_nothing(clock: Clock) -> None:
    receive = messages(clock)  # any receive() fails the test
    assert await discard_body(receive, seconds=5, max_bytes=0) == 0


async def test_the_answer_is_sent_before_the_body_is_read(clock: Clock) -> None:
    """The client gets every byte of the answer while the body is still being read; the
    response is complete only once the drain ended."""
    events: list[Any] = []
    queue = [body(b"x" * 100), body(b"y" * 100, more=False)]

    async def receive() -> dict[str, Any]:
        events.append("receive")
        return queue.pop(0)

    async def send(message: dict[str, Any]) -> None:
        events.append(message)

    answer = JSONResponse({"error": {"code": "unauthorized"}}, 401, {"Connection": "close"})
    await LingeringResponse(answer, seconds=5, max_bytes=1000)({}, receive, send)

    assert events[0] == {
        "type": "http.response.start",
        "status": 401,
        "headers": answer.raw_headers,
    }
    assert events[1] == {"type": "http.response.body", "body": answer.body, "more_body": True}
    assert events[2:] == [
        "receive",
        "receive",
        {"type": "http.response.body", "body": b"", "more_body": False},
    ]


@pytest.mark.parametrize(
    ("expect", "waits"),
    [("100-continue", True), ("100-Continue", True), (None, False), ("something-else", False)],
)
def test_waits_for_continue(expect: str | None, waits: bool) -> None:
    headers = [] if expect is None else [(b"expect", expect.encode())]
    request = Request({"type": "http", "method": "POST", "headers": headers})
    assert waits_for_continue(request) is waits


async def test_a_request_is_open_until_its_answer_is_complete(clock: Clock) -> None:
    requests = OpenRequests()
    seen: list[int] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(requests.count)
        raise RuntimeError("a bug")

    middleware = CountOpenRequests(app, requests)
    with pytest.raises(RuntimeError):
        await middleware({"type": "http"}, messages(clock), send_nothing)
    assert (seen, requests.count) == ([1], 0)


async def send_nothing(message: Message) -> None:
    pass


async def test_settled_waits_for_open_requests_and_no_longer_than_its_timeout(
    clock: Clock,
) -> None:
    requests = OpenRequests()

    async def settled_after(seconds: float, close_after: float | None) -> float:
        """How long `settled(seconds)` takes when the one open request (if any) closes
        after `close_after` seconds (None: never); the clock moves 0.05 s at a time."""
        start = clock.now
        waiting = asyncio.ensure_future(requests.settled(seconds))
        while not waiting.done():
            await clock.silence(0.05)
            if close_after is not None and clock.now - start >= close_after and requests.count:
                requests.closed()
        return clock.now - start

    requests.opened()
    assert 10 <= await settled_after(seconds=30, close_after=10) < 10.5
    assert await settled_after(seconds=30, close_after=None) < 0.5  # none open
    requests.opened()
    assert 30 <= await settled_after(seconds=30, close_after=None) < 30.5
