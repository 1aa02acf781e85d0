"""gunicorn serving ``tests.server_apps`` in a child process, on a socket bound here.

A production WSGI server: it de-chunks request bodies and says so (``wsgi.input_terminated``),
runs handlers in threads (``gthread``), and is a separate process, so the tests see it only
over HTTP. The listening socket is bound on 127.0.0.1 by the test and handed to gunicorn
(``--bind fd://N``), so there is no race for the port.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

__all__ = ["serve_gunicorn"]

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def serve_gunicorn(
    options: dict[str, Any] | None = None, redis_url: str | None = None
) -> Iterator[str]:
    """Serve the test app behind ``wsgi.IdempotencyMiddleware(**options)`` (a ``RedisStore``
    on ``redis_url`` when given); yield its base URL; stop gunicorn (and its worker) after."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "RESILIENCE_TEST_OPTIONS": json.dumps(options or {}),
        "RESILIENCE_TEST_REDIS": redis_url or "",
    }
    log = tempfile.TemporaryFile()  # noqa: SIM115  (closed in the finally below)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"fd://{sock.fileno()}",
            "--workers",
            "1",
            "--worker-class",
            "gthread",
            "--threads",
            "16",
            "--graceful-timeout",
            "1",
            "--log-level",
            "warning",
            "tests.server_apps:build_wsgi()",
        ],
        pass_fds=[sock.fileno()],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=log,
    )
    sock.close()  # gunicorn holds its own copy
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20.0
        while True:  # connections queue on the bound socket: the first answer means ready
            try:
                httpx.get(f"{url}/stats", timeout=5.0).raise_for_status()
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"gunicorn did not start: {log.read().decode()}") from None
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()
