"""Server middleware cost: µs per request through the ASGI and WSGI middleware, called in
process (no server, no socket), beside the bare application measured in the same run.

What each request costs the middleware: a request it lets through (GET, or a POST without a
key), a keyed POST run for the first time (read the body, claim, run, store the response), a
keyed retry answered from the record, and ``DeadlineMiddleware`` with and without a
``Request-Timeout-Ms``. Records live in a ``MemoryStore`` whose clock moves on by a day per
request, so the store stays small and its clean-up does not dominate. The same file runs on
an older checkout of the package (``PYTHONPATH=<checkout> python -m benchmarks.middleware``),
which is how a change's cost per request is measured: compare the overheads of two runs.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

from benchmarks._harness import Case, header, run_cases, sizes, table
from resilience import asgi, wsgi
from resilience.stores import MemoryStore
from resilience.testing import FakeClock

BODY = b'{"cents": 1250}'
AUTH = b"Bearer alice"


class _Jumping(FakeClock):
    """A day passes between two readings: every record has expired by the next request."""

    def now(self) -> float:
        self.advance(86_400.0 * 2)
        return super().now()


def _store() -> MemoryStore:
    return MemoryStore(clock=_Jumping())


def _requests() -> list[tuple[str, str, str, Callable[[int], dict[str, str]]]]:
    """The cases both kinds of server run: name, app (bare, idempotency, replay: a store that
    keeps its records, deadline), method, and the headers request ``i`` adds."""
    keys = itertools.count()
    none: Callable[[int], dict[str, str]] = lambda i: {}  # noqa: E731
    return [
        ("bare app", "bare", "POST", none),
        ("idempotency, GET", "idempotency", "GET", none),
        ("idempotency, POST without a key", "idempotency", "POST", none),
        (
            "idempotency, keyed POST, first run",
            "idempotency",
            "POST",
            lambda i: {"idempotency-key": f'"k{next(keys)}"'},
        ),
        (
            "idempotency, keyed POST, replayed",
            "replay",
            "POST",
            lambda i: {"idempotency-key": '"fixed"'},
        ),
        ("deadline, no header", "deadline", "POST", none),
        (
            "deadline, Request-Timeout-Ms",
            "deadline",
            "POST",
            lambda i: {"request-timeout-ms": "5000"},
        ),
    ]


def _apps(bare: Any, kind: Any) -> dict[str, Any]:
    """The apps ``_requests`` names, from the bare app and ``resilience.asgi`` or ``.wsgi``."""
    return {
        "bare": bare,
        "idempotency": kind.IdempotencyMiddleware(bare, store=_store()),
        "replay": kind.IdempotencyMiddleware(bare, store=MemoryStore()),  # keeps its records
        "deadline": kind.DeadlineMiddleware(bare),
    }


# -- ASGI ---------------------------------------------------------------------------------------


async def _bare_asgi(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 201, "headers": [(b"x", b"y")]})
    await send({"type": "http.response.body", "body": b'{"ok": true}'})


def _asgi_case(name: str, app: Any, method: str, headers: Callable[[int], list[Any]]) -> Case:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def acall(i: int) -> int:
        statuses: list[int] = []

        async def send(message: Any) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        scope = {
            "type": "http",
            "method": method,
            "path": "/charges",
            "query_string": b"",
            "headers": headers(i),
        }
        await app(scope, receive, send)
        await asyncio.sleep(0)  # the loop turns between requests, as under a server
        if statuses != [201]:
            raise AssertionError(f"{name}: {statuses}")
        return i

    return Case(name, acall=acall, group="ASGI (in process)")


def asgi_cases() -> list[Case]:
    plain = [(b"content-type", b"application/json"), (b"authorization", AUTH)]
    apps = _apps(_bare_asgi, asgi)

    def case(name: str, app: str, method: str, extra: Callable[[int], dict[str, str]]) -> Case:
        def headers(i: int) -> list[Any]:
            return [*plain, *((k.encode(), v.encode()) for k, v in extra(i).items())]

        return _asgi_case(name if app != "bare" else "ASGI bare app", apps[app], method, headers)

    return [case(*request) for request in _requests()]


# -- WSGI ---------------------------------------------------------------------------------------


def _bare_wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("201 Created", [("Content-Type", "application/json")])
    return [b'{"ok": true}']


def _wsgi_case(name: str, app: Any, method: str, extra: Callable[[int], dict[str, str]]) -> Case:
    import io

    def call(i: int) -> int:
        statuses: list[str] = []
        environ = {
            "REQUEST_METHOD": method,
            "PATH_INFO": "/charges",
            "QUERY_STRING": "",
            "CONTENT_LENGTH": str(len(BODY)),
            "wsgi.input": io.BytesIO(BODY),
            "HTTP_AUTHORIZATION": AUTH.decode(),
            **extra(i),
        }
        result = app(environ, lambda status, headers, exc_info=None: statuses.append(status))
        body = b"".join(result)
        close = getattr(result, "close", None)
        if close is not None:
            close()
        if statuses != ["201 Created"] or not body:
            raise AssertionError(f"{name}: {statuses}")
        return i

    return Case(name, call=call, group="WSGI (in process)")


def wsgi_cases() -> list[Case]:
    apps = _apps(_bare_wsgi, wsgi)

    def case(name: str, app: str, method: str, extra: Callable[[int], dict[str, str]]) -> Case:
        def environ(i: int) -> dict[str, str]:
            return {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in extra(i).items()}

        label = "WSGI bare app" if app == "bare" else f"{name} (WSGI)"
        return _wsgi_case(label, apps[app], method, environ)

    return [case(*request) for request in _requests()]


def main(argv: list[str] | None = None) -> None:
    rounds, batch, budget = sizes(argv, __doc__, quick=(3, 1_000, 10.0), full=(9, 5_000, 90.0))
    print(header(["httpx"]))
    print(f"# {rounds} interleaved rounds; median µs per request\n")
    for cases, baseline in ((asgi_cases(), "ASGI bare app"), (wsgi_cases(), "WSGI bare app")):
        results = run_cases(cases, rounds=rounds, batch=batch, max_seconds=budget)
        ours = next(r.name for r in results if "keyed POST, first run" in r.name)
        print(table(results, baseline=baseline, ours=ours))
        print()


if __name__ == "__main__":
    main()
