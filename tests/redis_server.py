"""A real ``redis-server`` on a free 127.0.0.1 port, started (and killable) by the tests.

Never the Redis this machine may run on 6379: a user's fresh machine has none, and tests that
kill the server must own it. ``make test`` installs redis-server when it is missing.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest

__all__ = ["RedisServer", "redis_server", "redis_server_session"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """One redis-server process: ``url``, ``stop()`` (kill -9), ``start()``, ``client()``."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: run `make test`, which installs it")
        self.binary = binary
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir = tempfile.mkdtemp(prefix="resilience-redis-")
        self._process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        """Start (or restart) the server on the same port and wait until it answers PING."""
        self._process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self._dir,
                "--protected-mode",
                "yes",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)  # the server is still starting: poll, bounded by the deadline
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        """Kill the server abruptly, as a crash would."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(10)

    def client(self, **options: object) -> object:
        import redis

        options.setdefault("socket_timeout", 0.5)
        options.setdefault("socket_connect_timeout", 0.5)
        return redis.Redis.from_url(self.url, **options)  # type: ignore[arg-type]

    def async_client(self, **options: object) -> object:
        import redis.asyncio

        options.setdefault("socket_timeout", 0.5)
        options.setdefault("socket_connect_timeout", 0.5)
        return redis.asyncio.Redis.from_url(self.url, **options)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def redis_server_session() -> Iterator[RedisServer]:
    """One redis-server for the session."""
    server = RedisServer()
    yield server
    server.stop()
    shutil.rmtree(server._dir, ignore_errors=True)


@pytest.fixture
def redis_server(redis_server_session: RedisServer) -> Iterator[RedisServer]:
    """The session's redis-server, running and empty at the start of each test."""
    server = redis_server_session
    if server._process is None or server._process.poll() is not None:
        server.start()
    client = server.client()
    client.flushall()  # type: ignore[attr-defined]
    client.close()  # type: ignore[attr-defined]
    yield server
    if server._process is None or server._process.poll() is not None:
        server.start()
