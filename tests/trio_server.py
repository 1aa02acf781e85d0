"""hypercorn's trio worker serving an ASGI app on 127.0.0.1, in a thread of this process.

What ``hypercorn --worker-class trio`` runs: ``trio.run`` of ``hypercorn.trio.serve``, so the
app (and the middleware in front of it) runs under trio, where asyncio's primitives fail. The
server binds port 0 itself and reports the address once it listens; leaving the block asks it to
shut down (through the run's token) and joins the thread, bounded.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import trio

__all__ = ["serve_trio"]


def _with_lifespan(app: Any) -> Any:
    """``app`` with the lifespan protocol answered here (the test apps know only HTTP)."""

    async def served(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return
        while True:
            message = await receive()
            kind = message["type"].rsplit(".", 1)[-1]  # "startup" or "shutdown"
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return

    return served


@contextmanager
def serve_trio(app: Any) -> Iterator[str]:
    """Serve ``app`` with hypercorn under trio; yield its base URL (``http://127.0.0.1:N``)."""
    from hypercorn.config import Config
    from hypercorn.trio import serve

    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.graceful_timeout = 2.0
    ready = threading.Event()
    found: dict[str, Any] = {}

    async def main() -> None:
        stop = trio.Event()
        found["token"], found["stop"] = trio.lowlevel.current_trio_token(), stop
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(
                partial(serve, _with_lifespan(app), config, shutdown_trigger=stop.wait)
            )
            found["url"] = binds[0]
            ready.set()

    def run() -> None:
        try:
            trio.run(main)
        except BaseException as error:  # reported to the test below
            found["error"] = error
        finally:
            ready.set()

    thread = threading.Thread(target=run, name="hypercorn-trio", daemon=True)
    thread.start()
    if not ready.wait(10.0) or "url" not in found:
        raise RuntimeError(f"hypercorn did not start: {found.get('error')!r}")
    try:
        yield found["url"]
    finally:
        found["token"].run_sync_soon(found["stop"].set)
        thread.join(10.0)
        if thread.is_alive():
            raise RuntimeError("hypercorn did not stop within 10 s")
        if "error" in found:
            raise found["error"]
