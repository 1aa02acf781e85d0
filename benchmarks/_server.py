"""A minimal keep-alive HTTP/1.1 server for loopback benchmarks: 200 ``ok`` to everything;
and ``spawn``, which starts a benchmark's server in its own process.

Run in its own process (``python -m benchmarks._server PORT_FILE``) so the client's GIL is not
shared; it writes its port to PORT_FILE and serves until killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

__all__ = ["RESPONSE", "publish", "spawn"]

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


class _Fast(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].lower()
            length = 0
            marker = head.find(b"content-length:")
            if marker >= 0:
                length = int(head[marker + 15 :].split(b"\r\n", 1)[0])
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            self.transport.write(RESPONSE)


def _serve(port_file: str) -> None:
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(loop.create_server(_Fast, "127.0.0.1", 0))
    publish(port_file, server.sockets[0].getsockname()[1])
    loop.run_until_complete(server.serve_forever())


def publish(port_file: str, port: int) -> None:
    """Write ``port`` to ``port_file`` at once (renamed into place: never read half-written)."""
    with open(port_file + ".tmp", "w") as handle:
        handle.write(str(port))
    os.replace(port_file + ".tmp", port_file)


@contextlib.contextmanager
def spawn(module: str, *args: str, timeout: float = 10.0) -> Iterator[str]:
    """Run ``python -m module PORT_FILE *args`` (a server that ``publish``-es its port) in its
    own process; yield ``http://127.0.0.1:PORT``, then terminate it. Raises ``RuntimeError`` if
    it exits or has not published a port within ``timeout`` seconds."""
    with tempfile.TemporaryDirectory() as scratch:
        port_file = os.path.join(scratch, "port")
        process = subprocess.Popen([sys.executable, "-m", module, port_file, *args])
        try:
            deadline = time.monotonic() + timeout
            while not os.path.exists(port_file):  # bounded: ``timeout`` seconds
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"the benchmark server {module} did not start")
                time.sleep(0.01)
            with open(port_file) as handle:
                yield f"http://127.0.0.1:{handle.read().strip()}"
        finally:
            process.terminate()
            process.wait(timeout)


if __name__ == "__main__":
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {0})  # the server on core 0; the client pins itself to core 1
    _serve(sys.argv[1])
