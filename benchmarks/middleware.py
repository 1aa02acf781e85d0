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

import argparse
import asyncio
import itertools
import warnings
from collections.abc import Callable
from typing import Any

from benchmarks._harness import Case, header, run_cases, table
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
    keys = itertools.count()
    replay = asgi.IdempotencyMiddleware(_bare_asgi, store=MemoryStore())
    fixed = [(b"idempotency-key", b'"fixed"'), (b"authorization", AUTH)]
    idem = asgi.IdempotencyMiddleware(_bare_asgi, store=_store())
    deadline = asgi.DeadlineMiddleware(_bare_asgi)
    plain = [(b"content-type", b"application/json"), (b"authorization", AUTH)]
    return [
        _asgi_case("ASGI bare app", _bare_asgi, "POST", lambda i: plain),
        _asgi_case("idempotency, GET", idem, "GET", lambda i: plain),
        _asgi_case("idempotency, POST without a key", idem, "POST", lambda i: plain),
        _asgi_case(
            "idempotency, keyed POST, first run",
            idem,
            "POST",
            lambda i: [*plain, (b"idempotency-key", b'"k%d"' % next(keys))],
        ),
        _asgi_case("idempotency, keyed POST, replayed", replay, "POST", lambda i: fixed),
        _asgi_case("deadline, no header", deadline, "POST", lambda i: plain),
        _asgi_case(
            "deadline, Request-Timeout-Ms",
            deadline,
            "POST",
            lambda i: [*plain, (b"request-timeout-ms", b"5000")],
        ),
    ]


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
    keys = itertools.count()
    idem = wsgi.IdempotencyMiddleware(_bare_wsgi, store=_store())
    replay = wsgi.IdempotencyMiddleware(_bare_wsgi, store=MemoryStore())
    deadline = wsgi.DeadlineMiddleware(_bare_wsgi)
    return [
        _wsgi_case("WSGI bare app", _bare_wsgi, "POST", lambda i: {}),
        _wsgi_case("idempotency, GET (WSGI)", idem, "GET", lambda i: {}),
        _wsgi_case("idempotency, POST without a key (WSGI)", idem, "POST", lambda i: {}),
        _wsgi_case(
            "idempotency, keyed POST, first run (WSGI)",
            idem,
            "POST",
            lambda i: {"HTTP_IDEMPOTENCY_KEY": f'"k{next(keys)}"'},
        ),
        _wsgi_case(
            "idempotency, keyed POST, replayed (WSGI)",
            replay,
            "POST",
            lambda i: {"HTTP_IDEMPOTENCY_KEY": '"fixed"'},
        ),
        _wsgi_case("deadline, no header (WSGI)", deadline, "POST", lambda i: {}),
        _wsgi_case(
            "deadline, Request-Timeout-Ms (WSGI)",
            deadline,
            "POST",
            lambda i: {"HTTP_REQUEST_TIMEOUT_MS": "5000"},
        ),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    rounds, batch, budget = (3, 1_000, 10.0) if args.quick else (9, 5_000, 90.0)
    warnings.simplefilter("ignore")
    print(header(["httpx"]))
    print(f"# {rounds} interleaved rounds; median µs per request\n")
    for cases, baseline in ((asgi_cases(), "ASGI bare app"), (wsgi_cases(), "WSGI bare app")):
        results = run_cases(cases, rounds=rounds, batch=batch, max_seconds=budget)
        ours = next(r.name for r in results if "keyed POST, first run" in r.name)
        print(table(results, baseline=baseline, ours=ours))
        print()


if __name__ == "__main__":
    main()
