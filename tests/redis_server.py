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
from typing import Any

import pytest

__all__ = [
    "RedisServer",
    "close_redis_clients",
    "record_commands",
    "redis_cluster",
    "redis_server",
    "redis_server_session",
]


def _free_port(*, cluster: bool = False) -> int:
    """A free port; for a cluster node also one whose bus port (+10000) exists and is free."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if not cluster:
            return port
        if port + 10000 <= 65535:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as bus:
                try:
                    bus.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port pair for a cluster node")


class RedisServer:
    """One redis-server process: ``url``, ``stop()`` (kill -9), ``start()``, ``client()``.

    With ``cluster=True`` it is a one-node Redis Cluster owning all 16384 slots, and
    ``client()`` is a ``redis.cluster.RedisCluster``: enough to prove the scripts' keys share a
    slot (a cluster refuses a script whose keys do not) and that cluster clients work.
    """

    def __init__(self, *, cluster: bool = False) -> None:
        self.cluster = cluster
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: run `make test`, which installs it")
        self.binary = binary
        self.port = _free_port(cluster=cluster)
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
                *(
                    ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
                    if self.cluster
                    else []
                ),
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
                        if self.cluster:
                            self._own_all_slots(deadline)
                        return
            except OSError:
                time.sleep(0.02)  # the server is still starting: poll, bounded by the deadline
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def _own_all_slots(self, deadline: float) -> None:
        import redis

        node = redis.Redis(host="127.0.0.1", port=self.port)
        try:
            if int(node.cluster("info").get("cluster_slots_assigned", 0)) == 0:  # type: ignore[no-untyped-call]
                node.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
            while node.cluster("info").get("cluster_state") != "ok":  # type: ignore[no-untyped-call]
                if time.monotonic() > deadline:
                    raise RuntimeError("the one-node cluster never became ok")
                time.sleep(0.02)  # the node is taking its slots: poll, bounded
        finally:
            node.close()

    def settle(self) -> None:
        """Wait (bounded polling) until the server is older than the idempotency restart fence,
        so that a test that does not restart Redis itself never meets it: a server just
        started refuses claims of new keys for ``RESTART_FENCE`` seconds."""
        import redis

        from resilience.stores._redis_idempotency import RESTART_FENCE

        node = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1.0)
        try:
            deadline = time.monotonic() + RESTART_FENCE + 5
            while int(node.info("server")["uptime_in_seconds"]) < RESTART_FENCE:
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server's uptime did not grow")
                time.sleep(0.05)  # the server's own clock: poll, bounded by the deadline
        finally:
            node.close()

    def stop(self) -> None:
        """Kill the server abruptly, as a crash would."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(10)

    def client(self, **options: object) -> object:
        import redis
        import redis.cluster

        options.setdefault("socket_timeout", 0.5)
        options.setdefault("socket_connect_timeout", 0.5)
        if self.cluster:
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            # a RedisStore refuses cluster clients that retry (a store call must be bounded)
            options.setdefault("retry", Retry(NoBackoff(), 0))
            return redis.cluster.RedisCluster(host="127.0.0.1", port=self.port, **options)  # type: ignore[arg-type]
        return redis.Redis.from_url(self.url, **options)  # type: ignore[arg-type]

    def async_client(self, **options: object) -> object:
        import redis.asyncio

        options.setdefault("socket_timeout", 0.5)
        options.setdefault("socket_connect_timeout", 0.5)
        return redis.asyncio.Redis.from_url(self.url, **options)  # type: ignore[arg-type]


def record_commands(client: Any) -> list[tuple[Any, ...]]:
    """Note the arguments of every command ``client`` sends from now on, as given to
    ``execute_command``. Call it before building a store on ``client``: scripts keep the
    client's method."""
    sent: list[tuple[Any, ...]] = []
    execute = client.execute_command

    def execute_command(*args: Any, **options: Any) -> Any:
        sent.append(args)
        return execute(*args, **options)

    client.execute_command = execute_command
    return sent


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
    server.settle()  # a test that restarted it: the next one does not meet the restart fence
    client = server.client()
    client.flushall()  # type: ignore[attr-defined]
    client.close()  # type: ignore[attr-defined]
    yield server
    if server._process is None or server._process.poll() is not None:
        server.start()


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[RedisServer]:
    """A one-node Redis Cluster on a free port, for the tests of one module."""
    server = RedisServer(cluster=True)
    server.settle()
    yield server
    server.stop()
    shutil.rmtree(server._dir, ignore_errors=True)


@pytest.fixture
def close_redis_clients(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Close every sync client a test opened with ``RedisServer.client`` (no socket is left to
    the garbage collector). Use with ``pytestmark = pytest.mark.usefixtures(...)``."""
    opened: list[Any] = []
    make = RedisServer.client

    def client(self: RedisServer, **options: object) -> object:
        opened.append(make(self, **options))
        return opened[-1]

    monkeypatch.setattr(RedisServer, "client", client)
    yield
    for made in opened:
        made.close()
