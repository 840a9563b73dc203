"""What app/lingering.py relies on in uvicorn (httptools and h11 alike), pinned on a real
server: once a response is complete, `receive()` reports only a disconnect, so the body can
be drained only while the response is still open; and while it is open (its bytes all sent,
`more_body` still set), the client has the whole answer and `receive()` goes on giving the
body."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from starlette.types import Message, Receive, Scope, Send

from harness.processes import free_port

ANSWER = b'{"error": {"code": "unauthorized"}}'
BODY_SIZE = 3 * 1024 * 1024


class RefusingApp:
    """Answers at once, before reading the body, then reads what `receive()` gives."""

    def __init__(self) -> None:
        self.keep_open = False
        self.received: list[Message] = []
        self.done = threading.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        self.received = []
        headers = [(b"content-length", str(len(ANSWER)).encode()), (b"connection", b"close")]
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": ANSWER, "more_body": self.keep_open})
        while True:
            message = await receive()
            self.received.append(message)
            if message["type"] == "http.disconnect" or not message.get("more_body", False):
                break
        if self.keep_open:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        self.done.set()


@pytest.fixture(params=["httptools", "h11"])
def served(request: pytest.FixtureRequest) -> Iterator[tuple[RefusingApp, int]]:
    app = RefusingApp()
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, http=request.param, lifespan="off", log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        thread.join(0.05)
    yield app, port
    server.should_exit = True
    thread.join(30)


def post(port: int) -> bytes:
    """POST a body of BODY_SIZE in full, then read the answer until the server closes (what
    was read before a reset, if the server closed with request bytes unread)."""
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        try:
            sock.sendall(
                b"POST / HTTP/1.1\r\nHost: t\r\n"
                + f"Content-Length: {BODY_SIZE}\r\n\r\n".encode()
                + b"x" * BODY_SIZE
            )
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionError:
            pass
    return answer


def body_bytes(received: list[Any]) -> int:
    return sum(len(m.get("body", b"")) for m in received if m["type"] == "http.request")


def test_after_a_complete_response_receive_reports_a_disconnect(
    served: tuple[RefusingApp, int],
) -> None:
    app, port = served
    post(port)  # the answer may be lost to the reset: the case app/lingering.py avoids
    assert app.done.wait(30)
    assert [m["type"] for m in app.received] == ["http.disconnect"]


def test_while_the_response_is_open_receive_gives_the_whole_body(
    served: tuple[RefusingApp, int],
) -> None:
    app, port = served
    app.keep_open = True
    answer = post(port)
    assert app.done.wait(30)
    assert answer.startswith(b"HTTP/1.1 401 ") and answer.endswith(ANSWER)
    assert body_bytes(app.received) == BODY_SIZE
    assert app.received[-1]["more_body"] is False
