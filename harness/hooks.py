"""A real HTTP receiver for the service's hooks: a small Starlette app under uvicorn in a
thread on 127.0.0.1, which records every call and answers as the test tells it.

It can be stopped and started again on the same port (a receiver that is down, then back),
and can hold its answer past the service's hook timeout (a receiver too slow to answer).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
from collections.abc import Callable
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.hooks.signing import SIGNATURE_HEADER, verify
from harness.processes import free_port, wait_until

#: What the receiver answers to an event: a status and a JSON body (None: an empty body), or
#: STALL to hold the answer until the receiver stops.
Reply = tuple[int, Any]
STALL: Reply = (0, "stall")


@dataclasses.dataclass(frozen=True)
class ReceivedCall:
    """One request as it reached the receiver."""

    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        event: dict[str, Any] = json.loads(self.body)
        return event

    def verifies(self, secret: str) -> bool:
        """Whether its signature holds under `secret`, as a receiver checks it."""
        return verify(secret, self.headers.get(SIGNATURE_HEADER.lower(), ""), self.body)


def allow_all(event: dict[str, Any]) -> Reply:
    return 200, None


class HookReceiver:
    """Records calls in `calls` and answers with `reply(event)`."""

    def __init__(self, reply: Callable[[dict[str, Any]], Reply] = allow_all) -> None:
        self.reply = reply
        self.port = free_port()
        self.calls: list[ReceivedCall] = []
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._released: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def _receive(self, request: Request) -> Response:
        call = ReceivedCall(dict(request.headers), await request.body())
        with self._lock:
            self.calls.append(call)
        status, body = self.reply(call.event)
        if (status, body) == STALL:
            assert self._released is not None
            await asyncio.wait_for(self._released.wait(), timeout=60)
            return Response(status_code=503)
        if body is None:
            return Response(status_code=status)
        return JSONResponse(body, status_code=status)

    async def _serve(self, server: uvicorn.Server) -> None:
        self._released = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        await server.serve()

    def start(self) -> HookReceiver:
        app = Starlette(routes=[Route("/hooks", self._receive, methods=["POST"])])
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._serve(server)), name="hook receiver", daemon=True
        )
        self._thread.start()
        if not wait_until(lambda: server.started, timeout=10, interval=0.01):
            raise RuntimeError("the hook receiver did not start")
        return self

    def stop(self) -> None:
        """Stop answering (stalled answers are released); the port is closed when it returns."""
        server, thread, released, loop = self._server, self._thread, self._released, self._loop
        if server is None or thread is None:
            return
        if released is not None and loop is not None:
            loop.call_soon_threadsafe(released.set)
        server.should_exit = True
        thread.join(timeout=30)
        self._server = self._thread = None

    def received(self, kind: str) -> list[dict[str, Any]]:
        """The events of type `kind` received so far, in order."""
        with self._lock:
            return [c.event for c in self.calls if c.headers.get("upload-hook-event") == kind]

    def all_calls(self) -> list[ReceivedCall]:
        with self._lock:
            return list(self.calls)
