"""app/lingering.py: the answer goes out first, then the rest of the body is read and dropped
within its bounds, and only then is the response complete. tests/e2e/test_refusals.py tries
it through nginx and curl; tests/integration/test_lingering.py pins what uvicorn does.

Time passes on the clock the test moves (tests/unit/asgi.py)."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse

from app.lingering import LingeringResponse, discard_body, waits_for_continue
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
