"""Refusals that reach the client: answer first, then read and drop the rest of the body.

The service often answers before it has read the whole request body: a wrong token, a body
over the limit, a part it refuses. If the connection were closed then, with request bytes
still unread, the kernel would reset it, and the reset can destroy the answer before the peer
reads it. A proxy that is still forwarding the body (nginx with `proxy_request_buffering off`)
then reports its own 502 instead. nginx avoids this for its own early answers with a lingering
close; this is the same for the service's.

Under uvicorn the response stays open while the body is drained: once a response is complete,
`receive()` only reports a disconnect, and uvicorn would drop the remaining body on its own,
however large, on a kept-alive connection. So the answer's bytes are sent with `more_body`,
the body is read and dropped for a bounded time and size, and only then is the response
completed, with `Connection: close`.
"""

from __future__ import annotations

import asyncio
import contextlib

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app import metrics


class LingeringResponse(Response):
    """`answer`, then up to `max_bytes` of the request body read and dropped within `seconds`.

    `answer` must carry `Connection: close`: the connection is not reused after a drain.
    """

    def __init__(self, answer: Response, *, seconds: float, max_bytes: int) -> None:
        self.seconds = seconds
        self.max_bytes = max_bytes
        self.status_code = answer.status_code
        self.body = answer.body
        self.raw_headers = answer.raw_headers
        self.background = answer.background

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": self.status_code,
                "headers": self.raw_headers,
            }
        )
        await send({"type": "http.response.body", "body": self.body, "more_body": True})
        dropped = await discard_body(receive, self.seconds, self.max_bytes)
        metrics.BYTES_DISCARDED.inc(dropped)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        if self.background is not None:
            await self.background()


async def discard_body(receive: Receive, seconds: float, max_bytes: int) -> int:
    """Read the request body and drop it until it ends, the client goes away, `max_bytes`
    were read or `seconds` have passed; the bytes dropped."""
    dropped = 0
    try:
        async with asyncio.timeout(seconds):
            while dropped < max_bytes:
                message = await receive()
                if message["type"] == "http.disconnect":
                    break
                dropped += len(message.get("body", b""))
                if not message.get("more_body", False):
                    break
    except TimeoutError:
        pass
    return dropped


def waits_for_continue(request: Request) -> bool:
    """The client sent `Expect: 100-continue`: it sends no body until asked, so a refusal
    before the body needs no drain (and asking for the body would be wrong)."""
    return request.headers.get("expect", "").lower() == "100-continue"


class OpenRequests:
    """How many HTTP requests have answers not yet complete, a lingering answer counting
    until its drain ends; counted by `CountOpenRequests`.

    uvicorn cancels the requests still running when its graceful-shutdown time is up; each
    then answers 503 and drains. Shutdown waits for them (`settled`): a process that ended at
    once would reset those connections, and the answers with them.
    """

    def __init__(self) -> None:
        self.count = 0
        self._none_open = asyncio.Event()
        self._none_open.set()

    def opened(self) -> None:
        self.count += 1
        self._none_open.clear()

    def closed(self) -> None:
        self.count -= 1
        if not self.count:
            self._none_open.set()

    async def settled(self, seconds: float) -> None:
        """Return once no request is open, or after `seconds`."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._none_open.wait()


class CountOpenRequests:
    """ASGI middleware: keeps `requests.count` of the HTTP requests being handled."""

    def __init__(self, app: ASGIApp, requests: OpenRequests) -> None:
        self.app = app
        self.requests = requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.requests.opened()
        try:
            await self.app(scope, receive, send)
        finally:
            self.requests.closed()
