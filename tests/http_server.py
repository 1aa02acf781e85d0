"""A scripted HTTP/1.1 server on 127.0.0.1 for integration tests (real sockets, real timing).

Tests script what each path answers — ``Reply`` (status, headers, body, optional delay),
``Stall`` (never answer), ``Drop`` (close the connection without a response), ``Echo`` — and read
back what the server received (``received(path)``): method, headers and body of every request,
in arrival order. The server runs its own event loop in a daemon thread; one instance serves
the whole session and is reset before each test.
"""

from __future__ import annotations

import asyncio
import http
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import pytest

__all__ = [
    "Drop",
    "Echo",
    "Received",
    "Reply",
    "ScriptedServer",
    "Stall",
    "dead_origin",
    "http_server",
    "http_server_session",
]


@dataclass(frozen=True)
class Reply:
    """Answer ``status`` with ``headers`` and ``body``, after ``delay`` seconds."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0


@dataclass(frozen=True)
class Stall:
    """Read the request and never answer (until the test ends)."""


@dataclass(frozen=True)
class Drop:
    """Read the request, then close the connection without a response."""


@dataclass(frozen=True)
class Echo:
    """Answer 200 with the request body."""


Action = Reply | Stall | Drop | Echo


@dataclass(frozen=True)
class Received:
    """One request as the server saw it; header names are lower case."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    connection: int = 0  # which TCP connection carried it (numbered from 1 per server)


class _Connection(asyncio.Protocol):
    def __init__(self, server: ScriptedServer) -> None:
        self.server = server
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.number = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server._connections.add(self)
        self.server._opened += 1
        self.number = self.server._opened

    def connection_lost(self, exc: Exception | None) -> None:
        self.server._connections.discard(self)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            request = self._parse()
            if request is None:
                return
            self.server._handle(self, request)

    def _parse(self) -> Received | None:
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return None
        lines = self.buffer[:head_end].decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        rest = self.buffer[head_end + 4 :]
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body, consumed = _dechunk(rest)
            if body is None:
                return None
        else:
            length = int(headers.get("content-length", "0"))
            if len(rest) < length:
                return None
            body, consumed = rest[:length], length
        self.buffer = rest[consumed:]
        return Received(method, target, headers, body, time.monotonic(), self.number)

    def send(self, status: int, headers: dict[str, str], body: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        reason = (
            http.HTTPStatus(status).phrase if status in http.HTTPStatus._value2member_map_ else ""
        )
        head = [f"HTTP/1.1 {status} {reason}", f"Content-Length: {len(body)}"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        self.transport.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)


def _dechunk(data: bytes) -> tuple[bytes | None, int]:
    body, position = b"", 0
    while True:
        line_end = data.find(b"\r\n", position)
        if line_end < 0:
            return None, 0
        size = int(data[position:line_end].split(b";")[0], 16)
        start = line_end + 2
        if len(data) < start + size + 2:
            return None, 0
        if size == 0:
            return body, start + 2
        body += data[start : start + size]
        position = start + size + 2


class ScriptedServer:
    """The server: ``url``, ``script(path, actions)``, ``received(path)``, ``reset()``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scripts: dict[str, list[Action]] = {}
        self._counts: dict[str, int] = {}
        self._received: list[Received] = []
        self._connections: set[_Connection] = set()
        self._opened = 0
        self._loop = asyncio.new_event_loop()
        started = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(started,), name="scripted-http-server", daemon=True
        )
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("the scripted HTTP server did not start")
        self.url = f"http://127.0.0.1:{self.port}"
        self.origin = self.url

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            self._loop.create_server(lambda: _Connection(self), "127.0.0.1", 0)
        )
        self.port = server.sockets[0].getsockname()[1]
        self._server = server
        started.set()
        self._loop.run_forever()
        for connection in list(self._connections):
            if connection.transport is not None:
                connection.transport.abort()
        server.close()
        self._loop.run_until_complete(server.wait_closed())
        self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        self._loop.close()

    def script(self, path: str, actions: Sequence[Action]) -> None:
        """The nth request to ``path`` gets ``actions[n]``; the last one repeats."""
        assert actions, "script at least one action"
        with self._lock:
            self._scripts[path] = list(actions)
            self._counts[path] = 0

    def received(self, path: str | None = None) -> list[Received]:
        """The requests received (for ``path``, or all), in arrival order."""
        with self._lock:
            return [r for r in self._received if path is None or r.path.split("?")[0] == path]

    def reset(self) -> None:
        """Forget scripts and receipts; close every open connection (releasing stalls)."""
        with self._lock:
            self._scripts.clear()
            self._counts.clear()
            self._received.clear()

        def close_all() -> None:
            for connection in list(self._connections):
                if connection.transport is not None:
                    connection.transport.close()

        self._loop.call_soon_threadsafe(close_all)

    def close(self) -> None:
        """Stop the server and its loop."""
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _handle(self, connection: _Connection, request: Received) -> None:
        path = request.path.split("?")[0]
        with self._lock:
            self._received.append(request)
            actions = self._scripts.get(path)
            if actions is None:
                action: Action = Reply(200, body=b"ok")
            else:
                count = self._counts[path]
                self._counts[path] = count + 1
                action = actions[min(count, len(actions) - 1)]
        if isinstance(action, Stall):
            return
        if isinstance(action, Drop):
            assert connection.transport is not None
            connection.transport.close()
            return
        if isinstance(action, Echo):
            connection.send(200, {}, request.body)
            return
        if action.delay > 0:
            self._loop.call_later(
                action.delay, connection.send, action.status, action.headers, action.body
            )
        else:
            connection.send(action.status, action.headers, action.body)


def dead_origin() -> str:
    """An origin on 127.0.0.1 where nothing listens: connecting is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def http_server_session() -> Iterator[ScriptedServer]:
    """One scripted server for the whole test session."""
    server = ScriptedServer()
    yield server
    server.close()


@pytest.fixture
def http_server(http_server_session: ScriptedServer) -> Iterator[ScriptedServer]:
    """The session's server, reset before and after each test."""
    http_server_session.reset()
    yield http_server_session
    http_server_session.reset()
