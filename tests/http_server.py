"""A scripted HTTP/1.1 server on 127.0.0.1 for integration tests (real sockets, real timing).

Tests script what each path answers — ``Reply`` (status, headers, body, optional delay),
``Stall`` (never answer), ``Drop`` (close the connection without a response), ``Echo`` — and read
back what the server received (``received(path)``, or ``wait_received(count, path)`` to wait for
requests still on their way): method, target, headers and body of every request, in arrival
order, with the number of the TCP connection that carried it.

The server is a raw ``asyncio.Protocol`` (keep-alive, Content-Length and chunked request bodies,
one request at a time per connection) on its own event loop in a daemon thread; one instance
serves the whole session (``http_server_session``) and is reset around each test
(``http_server``). Every method may be called from any thread.

In conftest.py::

    from tests.http_server import http_server, http_server_session  # noqa: F401  (fixtures)
"""

from __future__ import annotations

import asyncio
import http
import json
import math
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

__all__ = [
    "Action",
    "Driver",
    "Drop",
    "Echo",
    "Headers",
    "Received",
    "Relay",
    "Reply",
    "ScriptedServer",
    "Stall",
    "dead_origin",
    "driver",
    "http_server",
    "http_server_session",
    "read_body",
]

_MAX_HEAD = 64 * 1024
_NO_BODY_STATUSES = frozenset({204, 304})


@dataclass(frozen=True)
class Reply:
    """Answer ``status`` with ``headers`` and ``body``, ``delay`` seconds after the request.

    ``headers`` is a mapping or a sequence of (name, value) pairs (to repeat a header). The
    server adds ``Content-Length`` unless ``headers`` has one (so a test can send a wrong one).
    """

    status: int = 200
    headers: Mapping[str, str] | Sequence[tuple[str, str]] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0

    def __post_init__(self) -> None:
        if not 100 <= self.status <= 599:
            raise ValueError(f"status must be in [100, 599], got {self.status!r}")
        if not isinstance(self.body, bytes):
            raise TypeError(f"body must be bytes, got {type(self.body).__name__}")
        if not (math.isfinite(self.delay) and self.delay >= 0):
            raise ValueError(f"delay must be a finite number of seconds >= 0, got {self.delay!r}")


@dataclass(frozen=True)
class Stall:
    """Read the request and never answer, until the client closes or the server is reset."""


@dataclass(frozen=True)
class Drop:
    """Read the request, then close the connection without a response."""


@dataclass(frozen=True)
class Echo:
    """Answer 200 with the request body; ``X-Echo-Headers`` holds the request headers as JSON."""


Action = Reply | Stall | Drop | Echo
_OK = Reply(200, body=b"ok")


class Headers(dict[str, str]):
    """Request headers: names lower-cased, lookups ignore case, repeats joined by ``", "``."""

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.lower())

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(name.lower(), default)


@dataclass(frozen=True)
class Received:
    """One request as the server saw it.

    ``path`` is the request target as sent (query included; ``received(path)`` matches it
    without the query). ``headers`` ignores case; ``raw_headers`` keeps the (name, value) pairs
    as sent, in order. ``at`` is ``time.monotonic()`` when the request was complete.
    ``connection`` numbers the TCP connections from 1 (per server), so equal numbers mean a
    kept-alive connection was reused.
    """

    method: str
    path: str
    headers: Headers
    body: bytes
    at: float
    connection: int = 0
    raw_headers: tuple[tuple[str, str], ...] = ()


class _BadRequest(ValueError):
    pass


def _dechunk(data: bytearray, start: int) -> tuple[bytes, int] | None:
    """Decode a chunked body from ``data[start:]``: (body, end offset), or None if incomplete."""
    parts: list[bytes] = []
    position = start
    while True:
        line_end = data.find(b"\r\n", position)
        if line_end < 0:
            return None
        try:
            size = int(bytes(data[position:line_end]).split(b";")[0], 16)
        except ValueError:
            raise _BadRequest("bad chunk size") from None
        if size < 0:
            raise _BadRequest("bad chunk size")
        chunk_start = line_end + 2
        if size == 0:
            if data[chunk_start : chunk_start + 2] == b"\r\n":
                return b"".join(parts), chunk_start + 2
            trailers_end = data.find(b"\r\n\r\n", chunk_start)
            return None if trailers_end < 0 else (b"".join(parts), trailers_end + 4)
        if len(data) < chunk_start + size + 2:
            return None
        parts.append(bytes(data[chunk_start : chunk_start + size]))
        position = chunk_start + size + 2


class _Connection(asyncio.Protocol):
    """One client connection: parses requests one at a time and plays the scripted actions."""

    def __init__(self, server: ScriptedServer) -> None:
        self.server = server
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.number = 0
        self.busy = False  # a request is being answered (delayed) or stalled
        self.pending: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.number = self.server._connection_made(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.pending is not None:
            self.pending.cancel()
        self.server._connections.discard(self)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self.pump()

    def pump(self) -> None:
        """Answer the complete requests in the buffer, in order, until one is still pending."""
        while not self.busy and self.transport is not None and not self.transport.is_closing():
            try:
                parsed = self._parse()
            except _BadRequest as exc:
                self.send(400, (), str(exc).encode(), head_only=False, close=True)
                return
            if parsed is None:
                return
            request, keep_alive = parsed
            self.play(self.server._take(request), request, keep_alive)

    def _parse(self) -> tuple[Received, bool] | None:
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end < 0:
            if len(self.buffer) > _MAX_HEAD:
                raise _BadRequest("request head too large")
            return None
        lines = bytes(self.buffer[:head_end]).decode("latin-1").split("\r\n")
        request_line = lines[0].split(" ")
        if len(request_line) != 3 or not request_line[2].startswith("HTTP/1."):
            raise _BadRequest(f"bad request line {lines[0]!r}")
        method, target, version = request_line
        raw: list[tuple[str, str]] = []
        headers = Headers()
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon or not name or name != name.strip():
                raise _BadRequest(f"bad header line {line!r}")
            value = value.strip()
            raw.append((name, value))
            key = name.lower()
            joined = dict.get(headers, key)
            dict.__setitem__(headers, key, value if joined is None else f"{joined}, {value}")
        body_start = head_end + 4
        if "chunked" in headers.get("transfer-encoding", "").lower():
            decoded = _dechunk(self.buffer, body_start)
            if decoded is None:
                return None
            body, end = decoded
        else:
            try:
                length = int(headers.get("content-length", "0"))
            except ValueError:
                raise _BadRequest("bad Content-Length") from None
            if length < 0:
                raise _BadRequest("bad Content-Length")
            end = body_start + length
            if len(self.buffer) < end:
                return None
            body = bytes(self.buffer[body_start:end])
        del self.buffer[:end]
        connection_header = headers.get("connection", "").lower()
        keep_alive = (
            "close" not in connection_header
            if version == "HTTP/1.1"
            else "keep-alive" in connection_header
        )
        received = Received(
            method, target, headers, body, time.monotonic(), self.number, tuple(raw)
        )
        return received, keep_alive

    def play(self, action: Action, request: Received, keep_alive: bool) -> None:
        head_only = request.method == "HEAD"
        if isinstance(action, Stall):
            self.busy = True
        elif isinstance(action, Drop):
            assert self.transport is not None
            self.transport.close()
        elif isinstance(action, Echo):
            echoed = json.dumps(dict(request.headers), sort_keys=True)
            headers = [("Content-Type", "application/octet-stream"), ("X-Echo-Headers", echoed)]
            self.send(200, headers, request.body, head_only=head_only, close=not keep_alive)
        else:
            pairs = tuple(
                action.headers.items() if isinstance(action.headers, Mapping) else action.headers
            )
            if action.delay > 0:
                self.busy = True
                self.pending = self.server._loop.call_later(
                    action.delay, self._send_later, action, pairs, head_only, not keep_alive
                )
            else:
                self.send(
                    action.status, pairs, action.body, head_only=head_only, close=not keep_alive
                )

    def _send_later(
        self, reply: Reply, headers: Sequence[tuple[str, str]], head_only: bool, close: bool
    ) -> None:
        self.pending = None
        self.busy = False
        self.send(reply.status, headers, reply.body, head_only=head_only, close=close)
        self.pump()  # requests that arrived meanwhile (pipelined) are answered in order

    def send(
        self,
        status: int,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        *,
        head_only: bool,
        close: bool,
    ) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        try:
            reason = http.HTTPStatus(status).phrase
        except ValueError:
            reason = "Unknown"
        lines = [f"HTTP/1.1 {status} {reason}"]
        names = {name.lower() for name, _ in headers}
        bodiless = status < 200 or status in _NO_BODY_STATUSES
        if not bodiless and not names & {"content-length", "transfer-encoding"}:
            lines.append(f"Content-Length: {len(body)}")
        if close and "connection" not in names:
            lines.append("Connection: close")
        lines += [f"{name}: {value}" for name, value in headers]
        payload = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if not (bodiless or head_only):
            payload += body
        self.transport.write(payload)
        if close or any(
            name.lower() == "connection" and "close" in value.lower() for name, value in headers
        ):
            self.transport.close()


class ScriptedServer:
    """The server: ``url``, ``script(path, actions)``, ``received(path)``, ``reset()``."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._scripts: dict[str, list[Action]] = {}
        self._counts: dict[str, int] = {}
        self._received: list[Received] = []
        self._connections: set[_Connection] = set()  # touched on the loop thread only
        self._opened = 0
        self._loop = asyncio.new_event_loop()
        self._startup_error: BaseException | None = None
        started = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(host, started), name="scripted-http-server", daemon=True
        )
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("the scripted HTTP server did not start within 10 s")
        if self._startup_error is not None:
            raise RuntimeError("the scripted HTTP server failed to start") from (
                self._startup_error
            )
        self.url = f"http://{host}:{self.port}"
        self.origin = self.url

    def __repr__(self) -> str:
        return f"ScriptedServer({self.url!r})"

    # -- the loop thread ---------------------------------------------------------------------

    def _run(self, host: str, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            server = self._loop.run_until_complete(
                self._loop.create_server(lambda: _Connection(self), host, 0)
            )
        except BaseException as exc:
            self._startup_error = exc
            started.set()
            self._loop.close()
            return
        self.port: int = server.sockets[0].getsockname()[1]
        started.set()
        self._loop.run_forever()
        self._close_connections()
        server.close()
        self._loop.run_until_complete(server.wait_closed())
        self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        self._loop.close()

    def _connection_made(self, connection: _Connection) -> int:
        self._connections.add(connection)
        with self._lock:
            self._opened += 1
            return self._opened

    def _close_connections(self) -> None:
        for connection in list(self._connections):
            if connection.pending is not None:
                connection.pending.cancel()
            if connection.transport is not None:
                connection.transport.close()

    def _take(self, request: Received) -> Action:
        """Record ``request`` and pick its action (called on the loop thread)."""
        path = request.path.partition("?")[0]
        with self._lock:
            self._received.append(request)
            self._changed.notify_all()
            actions = self._scripts.get(path)
            if actions is None:
                return _OK
            count = self._counts[path]
            self._counts[path] = count + 1
            return actions[min(count, len(actions) - 1)]

    def _on_loop(self, function: Callable[[], None], timeout: float = 10.0) -> None:
        """Run ``function`` on the loop thread and wait until it has run."""
        if threading.current_thread() is self._thread:
            function()
            return
        done = threading.Event()

        def run() -> None:
            try:
                function()
            finally:
                done.set()

        self._loop.call_soon_threadsafe(run)
        if not done.wait(timeout):
            raise RuntimeError(f"the scripted HTTP server's loop did not answer in {timeout} s")

    # -- the test's side -----------------------------------------------------------------------

    def script(self, path: str, actions: Sequence[Action]) -> None:
        """The nth request to ``path`` (query ignored) gets ``actions[n]``; the last repeats."""
        actions = list(actions)
        if not actions:
            raise ValueError("actions must hold at least one action")
        for action in actions:
            if not isinstance(action, Reply | Stall | Drop | Echo):
                raise TypeError(f"actions must be Reply, Stall, Drop or Echo, got {action!r}")
        with self._lock:
            self._scripts[path] = actions
            self._counts[path] = 0

    def _matching(self, path: str | None) -> list[Received]:
        if path is None:
            return list(self._received)
        return [r for r in self._received if r.path.partition("?")[0] == path]

    def received(self, path: str | None = None) -> list[Received]:
        """The requests received (to ``path``, query ignored; or all), in arrival order."""
        with self._lock:
            return self._matching(path)

    def wait_received(
        self, count: int, path: str | None = None, *, timeout: float = 5.0
    ) -> list[Received]:
        """Wait until at least ``count`` requests (to ``path``) have arrived; return them all.

        Raises ``TimeoutError`` after ``timeout`` seconds: a test that waits for a request that
        never comes fails instead of hanging.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = self._matching(path)
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"{len(found)} of {count} requests to {path or 'any path'} "
                        f"arrived within {timeout} s"
                    )
                self._changed.wait(left)

    def reset(self) -> None:
        """Close every connection (releasing stalls and cancelling delayed replies), then forget
        scripts and receipts. Returns once done."""

        def reset_on_loop() -> None:
            self._close_connections()
            with self._lock:
                self._scripts.clear()
                self._counts.clear()
                self._received.clear()

        self._on_loop(reset_on_loop)

    def close(self) -> None:
        """Stop the server and its loop."""
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


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


class Relay:
    """A loopback HTTP/1.1 relay, one request per connection, on its own threads.

    With ``upstream`` it forwards every request there (a reverse proxy); without, it is a
    forward proxy: it forwards to the origin named by the absolute-form request target
    (``GET http://127.0.0.1:8000/path``), as ``httpx.Client(proxy=...)`` sends for ``http://``
    URLs. ``drop(n)`` (n counts requests from 0) decides, after the upstream's whole answer is
    in, to close the client's connection without relaying it: the handler ran, the client
    never learns it. ``forwarded`` lists (method, target) of every request relayed upstream.
    """

    def __init__(self, upstream: str | None = None, drop: Callable[[int], bool] | None = None):
        self._upstream = upstream
        self._drop = drop or (lambda n: False)
        self._lock = threading.Lock()
        self.forwarded: list[tuple[str, str]] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="relay", daemon=True)
        self._thread.start()

    def __enter__(self) -> Relay:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._closed.set()
        self._thread.join(5)
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with client:
            client.settimeout(10)
            try:
                request = _read_request(client)
            except (OSError, ValueError):
                return
            if request is None:
                return
            head, body = request
            lines = head.split(b"\r\n")
            method, target, version = lines[0].decode("latin-1").split(" ")
            origin = self._upstream
            if origin is None:  # forward proxy: the origin is in the target
                url = httpx.URL(target)
                origin = f"{url.scheme}://{url.host}:{url.port or 80}"
                target = url.raw_path.decode("ascii")
            host, _, port = origin.rpartition("//")[2].partition(":")
            kept = [
                line
                for line in lines[1:]
                if not line.lower().startswith((b"connection:", b"proxy-connection:"))
            ]
            upstream_head = b"\r\n".join(
                [f"{method} {target} {version}".encode("latin-1"), *kept, b"Connection: close"]
            )
            with self._lock:
                number = len(self.forwarded)
                self.forwarded.append((method, target))
            try:
                with socket.create_connection((host, int(port)), timeout=10) as upstream:
                    upstream.sendall(upstream_head + b"\r\n\r\n" + body)
                    answer = _read_to_end(upstream)
            except OSError:
                return
            if not self._drop(number):
                client.sendall(answer)


def _read_request(sock: socket.socket) -> tuple[bytes, bytes] | None:
    """One request from ``sock``: its head (without the blank line) and its body as sent
    (Content-Length, or chunked up to its last chunk)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    fields = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(b":") for line in head.split(b"\r\n")[1:])
    }
    if b"chunked" in fields.get(b"transfer-encoding", b"").lower():
        while not body.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                raise ValueError("the request body ended early")
            body += chunk
    else:
        length = int(fields.get(b"content-length", b"0"))
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                raise ValueError("the request body ended early")
            body += chunk
    return head, body


def _read_to_end(sock: socket.socket) -> bytes:
    parts = []
    while chunk := sock.recv(65536):
        parts.append(chunk)
    return b"".join(parts)


class Driver:
    """Sends one request through a sync or an async resilient transport (``driver``)."""

    def __init__(self, colour: str) -> None:
        self.colour = colour

    def transport(self, inner: Any = None, **options: Any) -> Any:
        from resilience.http import AsyncResilientTransport, ResilientTransport

        if self.colour == "sync":
            return ResilientTransport(inner, **options)
        return AsyncResilientTransport(inner, **options)

    def send(self, transport: Any, method: str, url: str, **kwargs: Any) -> httpx.Response:
        if self.colour == "sync":
            with httpx.Client(transport=transport) as client:
                return client.request(method, url, **kwargs)

        async def go() -> httpx.Response:
            async with httpx.AsyncClient(transport=transport) as client:
                return await client.request(method, url, **kwargs)

        return asyncio.run(go())


@pytest.fixture(params=["sync", "async"])
def driver(request: pytest.FixtureRequest) -> Driver:
    """Every transport test runs against both transports."""
    return Driver(request.param)


async def read_body(receive: Callable[[], Any]) -> bytes:
    """An ASGI app's whole request body, however many ``http.request`` messages carry it."""
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    return body
