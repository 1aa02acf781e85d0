"""The application behind the middleware in the server tests, ASGI and WSGI alike.

Tests talk to it over HTTP only, so the same test drives uvicorn in this process, gunicorn
in a child process and hypercorn under trio (``tests.trio_server``). ``POST /charges`` runs a
charge whose behaviour the ``X-Test`` header picks (headers are not part of the payload's
fingerprint); ``GET /stats`` tells what ran;
``GET /release`` lets held handlers go on. ``build_wsgi()`` is what gunicorn loads: it reads
its middleware options from ``RESILIENCE_TEST_OPTIONS`` (JSON) and ``RESILIENCE_TEST_REDIS``.

Behaviours: ``ok`` (201 with a ``Set-Cookie``), ``hold`` (wait for ``/release``; then ok),
``hold-first`` (the first run holds, later ones do not), ``crash`` (raise: the WSGI side renders
a 500 as Flask and Django do; uvicorn answers 500), ``401``, ``big`` (1.5 MiB with a length),
``stream`` (three chunks, no length), ``write`` and ``write-big`` (WSGI only: the body
through ``start_response``'s ``write()``, then a last chunk returned), ``deadline`` (wait out
the caller's deadline, then fail as a timeout), ``gated`` (one chunk, then wait for
``/release``, then the time left in a chunk).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import sniffio

from resilience import remaining

BIG = 3 << 19  # 1.5 MiB: over the default max_response (1 MiB)


class Ledger:
    """What ran: every handler run and the bodies it charged."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.runs = 0
        self.charges: list[str] = []
        self.held = 0
        self.release = threading.Event()
        self.on_shutdown: list[Any] = []  # coroutine functions run by ASGI GET /shutdown

    def stats(self) -> bytes:
        with self.lock:
            return json.dumps(
                {"runs": self.runs, "charges": self.charges, "held": self.held}
            ).encode()

    def start(self) -> int:
        with self.lock:
            self.runs += 1
            return self.runs

    def charge(self, body: bytes) -> bytes:
        with self.lock:
            self.charges.append(body.decode("latin-1"))
            return json.dumps({"charge": len(self.charges)}).encode()

    def hold(self) -> None:
        with self.lock:
            self.held += 1
        if not self.release.wait(30.0):
            raise RuntimeError("the test never released the held request")


def _time_out() -> None:
    """Spend the caller's deadline, then fail as an operation that ran out of time would."""
    left = remaining()
    threading.Event().wait(left if left is not None else 0.0)
    raise TimeoutError("the work did not finish in the time the caller gave")


# -- WSGI ---------------------------------------------------------------------------------------


def wsgi_app(ledger: Ledger) -> Any:
    """The bare WSGI app; exceptions become a 500 inside it, as Flask and Django render them."""

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        try:
            return route(environ, start_response)
        except Exception:
            start_response("500 INTERNAL SERVER ERROR", [("Content-Length", "5")], sys.exc_info())
            return [b"crash"]

    def route(environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if path == "/stats":
            start_response("200 OK", [("Content-Type", "application/json")])
            return [ledger.stats()]
        if path == "/release":
            ledger.release.set()
            start_response("200 OK", [("Content-Length", "0")])
            return [b""]
        behaviour = environ.get("HTTP_X_TEST", "ok")
        if path == "/gated" or behaviour == "gated":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return _gated(ledger)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else environ["wsgi.input"].read()
        run = ledger.start()
        if behaviour == "hold" or (behaviour == "hold-first" and run == 1):
            ledger.hold()
        if behaviour == "crash":
            raise RuntimeError("the view failed")
        if behaviour == "deadline":
            _time_out()
        if behaviour == "401":
            start_response("401 Unauthorized", [("WWW-Authenticate", "Bearer")])
            return [b"expired"]
        if behaviour == "big":
            start_response("201 Created", [("Content-Length", str(BIG))])
            return [b"x" * BIG]
        if behaviour == "stream":
            start_response("201 Created", [("Content-Type", "text/plain")])
            return (b"chunk %d;" % n for n in range(3))
        if behaviour in ("write", "write-big"):  # the legacy write() callable (PEP 3333)
            size = BIG if behaviour == "write-big" else 3 * len(b"written 0;")
            write = start_response("201 Created", [("Content-Length", str(size + 5))])
            if behaviour == "write-big":
                for _ in range(3):
                    write(b"x" * (BIG // 3))
            else:
                for n in range(3):
                    write(b"written %d;" % n)
            return [b"tail;"]
        payload = ledger.charge(body)
        start_response(
            "201 Created",
            [("Content-Type", "application/json"), ("Set-Cookie", f"session=s{run}")],
        )
        return [payload]

    return app


def _gated(ledger: Ledger) -> Iterator[bytes]:
    yield b"first;"
    ledger.hold()
    yield json.dumps({"remaining": remaining()}).encode()


def build_wsgi() -> Any:
    """The middleware stack gunicorn serves (``tests.server_apps:build_wsgi()``)."""
    from resilience.wsgi import DeadlineMiddleware, IdempotencyMiddleware

    options = json.loads(os.environ.get("RESILIENCE_TEST_OPTIONS", "{}"))
    tenant = options.pop("tenant_scope", False)
    if tenant == "type":  # a broken key_scope: returns the value's length, not a str
        options["key_scope"] = lambda environ: len(environ.get("HTTP_X_TENANT", ""))
    elif tenant:  # records scoped by the X-Tenant header's value ("" when sent empty)
        options["key_scope"] = lambda environ: environ.get("HTTP_X_TENANT")
    redis_url = os.environ.get("RESILIENCE_TEST_REDIS")
    if redis_url:
        import redis

        from resilience.stores import RedisStore

        client = redis.Redis.from_url(redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)
        options["store"] = RedisStore(client)
        options.setdefault("name", "payments")  # a shared store's records need a namespace
    return IdempotencyMiddleware(DeadlineMiddleware(wsgi_app(Ledger())), **options)


# -- ASGI ---------------------------------------------------------------------------------------


def asgi_app(ledger: Ledger) -> Any:
    """The bare ASGI app (its exceptions reach uvicorn, which answers 500)."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        path = scope["path"]
        headers = dict(scope["headers"])
        behaviour = headers.get(b"x-test", b"ok").decode()
        if path == "/stats":
            await _respond(send, 200, ledger.stats())
            return
        if path == "/release":
            ledger.release.set()
            await _respond(send, 200, b"")
            return
        if path == "/shutdown":  # close what lives in this loop (redis.asyncio clients)
            for close in ledger.on_shutdown:
                await close()
            await _respond(send, 200, b"")
            return
        if path == "/gated" or behaviour == "gated":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"first;", "more_body": True})
            await _in_thread(ledger.hold)
            left = json.dumps({"remaining": remaining()}).encode()
            await send({"type": "http.response.body", "body": left})
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        run = ledger.start()
        if behaviour == "hold" or (behaviour == "hold-first" and run == 1):
            await _in_thread(ledger.hold)
        if behaviour == "crash":
            raise RuntimeError("the handler failed")
        if behaviour == "deadline":
            await _in_thread(_time_out)
        if behaviour == "401":
            await _respond(send, 401, b"expired", [(b"www-authenticate", b"Bearer")])
            return
        if behaviour == "big":
            await _respond(send, 201, b"x" * BIG)
            return
        if behaviour == "stream":
            await send({"type": "http.response.start", "status": 201, "headers": []})
            for n in range(3):
                await send(
                    {"type": "http.response.body", "body": b"chunk %d;" % n, "more_body": n < 2}
                )
            return
        payload = ledger.charge(body)
        await _respond(send, 201, payload, [(b"set-cookie", b"session=s%d" % run)])

    return app


async def _in_thread(work: Callable[[], object]) -> None:
    """Run blocking ``work`` in a worker thread (in a copy of this context), under asyncio or
    trio (``tests.trio_server`` serves this app under trio)."""
    if sniffio.current_async_library() == "trio":
        import trio

        await trio.to_thread.run_sync(work)
    else:
        await asyncio.to_thread(work)


async def _respond(send: Any, status: int, body: bytes, extra: list[Any] | None = None) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send(
        {"type": "http.response.start", "status": status, "headers": [*headers, *(extra or [])]}
    )
    await send({"type": "http.response.body", "body": body})
