"""A TCP proxy on 127.0.0.1 that counts the bytes it forwards and can cut the connection
that carries a given byte: a network drop in the middle of a request, at a byte a test
chooses, without timing.

Put between nginx and the app (nginx's upstream is the proxy), it counts what reached the
app. `hold_at(n)` stops forwarding towards the server once `n` bytes have gone that way in
total (across connections, as nginx reuses them), and sets `held`; `cut()` then resets both
sides of that connection, so the app sees its request end early and nginx answers 502.
Everything else passes through untouched.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Callable

#: SO_LINGER on, 0 s: close() sends a reset instead of a graceful FIN.
RESET_ON_CLOSE = struct.pack("ii", 1, 0)


class ProxiedConnection:
    """One client connection and its connection to the server."""

    def __init__(self, client: socket.socket, server: socket.socket) -> None:
        self.client = client
        self.server = server
        #: Set by cut(): the held pump stops waiting and returns.
        self.released = threading.Event()
        self._pumps = 2
        self._lock = threading.Lock()

    def pump_done(self) -> None:
        """Close both sockets once neither direction is pumping any more."""
        with self._lock:
            self._pumps -= 1
            last = self._pumps == 0
        if last:
            self.client.close()
            self.server.close()

    def reset(self) -> None:
        """Reset both sides; blocked reads in the pumps wake up with nothing."""
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_ON_CLOSE)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RD)
            with contextlib.suppress(OSError):
                sock.close()
        self.released.set()


class CuttingProxy:
    """Forwards 127.0.0.1:<port> to `upstream` ("127.0.0.1:PORT")."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.rsplit(":", 1)
        self.upstream = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._connections: list[ProxiedConnection] = []
        self._hold_at: int | None = None
        self._held: ProxiedConnection | None = None
        #: Bytes forwarded from clients to the server, all connections together.
        self.forwarded = 0
        #: Set once the byte chosen with hold_at() has been forwarded and forwarding stopped.
        self.held = threading.Event()
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def hold_at(self, total_bytes: int) -> None:
        """Forward towards the server up to `total_bytes` in all, then hold that connection."""
        with self._lock:
            if total_bytes <= self.forwarded:
                raise ValueError(f"{self.forwarded} bytes were already forwarded")
            self._hold_at = total_bytes
            self.held.clear()

    def cut(self) -> None:
        """Reset the held connection on both sides; later connections pass untouched."""
        with self._lock:
            held, self._held = self._held, None
        if held is None:
            raise RuntimeError("no connection is held")
        held.reset()

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            connection.reset()
        self._accepting.join(timeout=10)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # stopped
            try:
                server = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            connection = ProxiedConnection(client, server)
            with self._lock:
                self._connections.append(connection)
            for pump in (self._to_server, self._to_client):
                threading.Thread(target=self._pump, args=(pump, connection), daemon=True).start()

    @staticmethod
    def _pump(pump: Callable[[ProxiedConnection], None], connection: ProxiedConnection) -> None:
        try:
            pump(connection)
        finally:
            connection.pump_done()

    def _to_server(self, connection: ProxiedConnection) -> None:
        while True:
            try:
                data = connection.client.recv(256 * 1024)
            except OSError:
                return
            if not data:
                with contextlib.suppress(OSError):
                    connection.server.shutdown(socket.SHUT_WR)
                return
            with self._lock:
                allowed = len(data)
                hold = self._hold_at is not None and self.forwarded + allowed >= self._hold_at
                if hold:
                    assert self._hold_at is not None
                    allowed = self._hold_at - self.forwarded
                    self._hold_at = None
                    self._held = connection
                self.forwarded += allowed
            try:
                connection.server.sendall(data[:allowed])
            except OSError:
                return
            if hold:
                self.held.set()
                connection.released.wait()
                return

    def _to_client(self, connection: ProxiedConnection) -> None:
        while True:
            try:
                data = connection.server.recv(256 * 1024)
            except OSError:
                return
            if not data:
                with contextlib.suppress(OSError):
                    connection.client.shutdown(socket.SHUT_WR)
                return
            try:
                connection.client.sendall(data)
            except OSError:
                return
