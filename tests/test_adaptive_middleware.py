"""ConcurrencyLimitMiddleware (ASGI on uvicorn, WSGI on threaded wsgiref, both on 127.0.0.1):
503 with Retry-After past the limit, samples from the app's answers, slots freed on every path."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from resilience import AdaptiveConcurrency, AimdLimit, ConcurrencyLimitedError
from resilience import asgi as resilience_asgi
from resilience import wsgi as resilience_wsgi
from resilience.testing import serve_asgi, serve_wsgi
from tests.conftest import wait_until

WAIT = 10.0


class App:
    """An app in both interfaces: /hold waits for ``release``, /busy answers 503, /boom raises,
    /stream streams two chunks; anything else answers 200."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Semaphore(0)
        self.calls: list[str] = []

    def outcome(self, path: str) -> int:
        self.calls.append(path)
        if path == "/hold":
            self.entered.release()
            assert self.release.wait(WAIT)
        if path == "/boom":
            raise RuntimeError("boom")
        return 503 if path == "/busy" else 200

    async def asgi(self, scope: Any, receive: Any, send: Any) -> None:
        status = await asyncio.to_thread(self.outcome, scope["path"])
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    def wsgi(self, environ: Any, start_response: Any) -> Any:
        status = self.outcome(environ["PATH_INFO"])
        start_response(f"{status} X", [("Content-Type", "text/plain")])
        if environ["PATH_INFO"] == "/stream":
            return iter([b"o", b"k"])
        return [b"ok"]


@pytest.fixture(params=["asgi", "wsgi"])
def served(request: pytest.FixtureRequest) -> Iterator[tuple[str, App, AdaptiveConcurrency]]:
    app = App()
    limiter = AdaptiveConcurrency(
        AimdLimit(initial_limit=1, backoff_ratio=0.5), on_result=lambda status: status == 503
    )
    if request.param == "asgi":
        with serve_asgi(resilience_asgi.ConcurrencyLimitMiddleware(app.asgi, limiter)) as url:
            yield url, app, limiter
    else:
        with serve_wsgi(resilience_wsgi.ConcurrencyLimitMiddleware(app.wsgi, limiter)) as url:
            yield url, app, limiter


@pytest.mark.server
def test_past_the_limit_a_request_gets_503_without_reaching_the_app(
    served: tuple[str, App, AdaptiveConcurrency],
) -> None:
    """At a limit of 1 with one request held, the next gets 503 + Retry-After and a
    temporary-reduced-capacity problem; once the first is done, requests pass again."""
    url, app, limiter = served
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(httpx.get, f"{url}/hold", timeout=WAIT)
        assert app.entered.acquire(timeout=WAIT)
        refused = httpx.get(f"{url}/next", timeout=WAIT)
        app.release.set()
        assert held.result(WAIT).status_code == 200
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"].endswith("temporary-reduced-capacity")
    assert app.calls == ["/hold"] and limiter.rejections == 1
    assert httpx.get(f"{url}/after", timeout=WAIT).status_code == 200
    wait_until(lambda: limiter.in_flight == 0, "the slot to be freed")


@pytest.mark.server
def test_the_apps_503_is_a_drop_and_a_failure_frees_the_slot(
    served: tuple[str, App, AdaptiveConcurrency],
) -> None:
    """``on_result`` sees the status: the app's 503 halves the AIMD limit; an app that raises
    frees its slot (the server answers 500)."""
    url, _, limiter = served
    assert httpx.get(f"{url}/ok", timeout=WAIT).status_code == 200
    wait_until(lambda: limiter.limit == 2, "an answer at the limit to grow it")
    assert httpx.get(f"{url}/busy", timeout=WAIT).status_code == 503
    wait_until(lambda: limiter.limit == 1, "the app's 503 to halve it")
    assert httpx.get(f"{url}/boom", timeout=WAIT).status_code == 500
    wait_until(lambda: limiter.in_flight == 0, "the failed request's slot to be freed")
    assert limiter.rejections == 0


def test_a_streamed_wsgi_response_holds_its_slot_until_closed() -> None:
    """A stream's slot is freed when the server closes it; a whole response's at return."""
    app = App()
    limiter = AdaptiveConcurrency(AimdLimit(initial_limit=4))
    middleware = resilience_wsgi.ConcurrencyLimitMiddleware(app.wsgi, limiter)
    environ = {"PATH_INFO": "/stream", "REQUEST_METHOD": "GET"}
    body = middleware(environ, lambda status, headers, exc_info=None: None)
    assert limiter.in_flight == 1 and b"".join(body) == b"ok"
    body.close()  # type: ignore[attr-defined]
    body.close()  # type: ignore[attr-defined]  # twice: counted once
    assert limiter.in_flight == 0
    whole = middleware({**environ, "PATH_INFO": "/"}, lambda *args: None)
    assert whole == [b"ok"] and limiter.in_flight == 0


def test_the_limiter_must_be_adaptive() -> None:
    """Anything but an AdaptiveConcurrency is refused at construction, by name."""
    with pytest.raises(TypeError, match="limiter must be an AdaptiveConcurrency"):
        resilience_asgi.ConcurrencyLimitMiddleware(App().asgi, 5)  # type: ignore[arg-type]


def test_a_refusal_inside_the_app_is_not_answered_as_the_middlewares_own() -> None:
    """An app whose own limiter (same default name, "adaptive_concurrency") refuses raises
    through the middleware, ASGI and WSGI alike: it is not answered 503 as if the
    middleware's limiter had refused, that limiter counts no rejection and takes no sample,
    and its slot is freed."""
    inner = AdaptiveConcurrency(AimdLimit(initial_limit=1, max_limit=1))
    outer = AdaptiveConcurrency(Recording())
    assert inner.name == outer.name
    assert inner._try_acquire()  # the app's limiter is full: it refuses every call

    @inner
    async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("not reached")

    @inner
    def wsgi_app(environ: Any, start_response: Any) -> Any:
        raise AssertionError("not reached")

    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    asgi = resilience_asgi.ConcurrencyLimitMiddleware(asgi_app, outer)
    scope = {"type": "http", "method": "GET", "path": "/"}
    with pytest.raises(ConcurrencyLimitedError) as caught:
        asyncio.run(asgi(scope, receive, send))
    assert caught.value.name == inner.name and sent == []
    wsgi = resilience_wsgi.ConcurrencyLimitMiddleware(wsgi_app, outer)
    with pytest.raises(ConcurrencyLimitedError):
        wsgi({"PATH_INFO": "/", "REQUEST_METHOD": "GET"}, lambda *args: None)
    assert outer.rejections == 0 and outer.in_flight == 0
    assert outer._admission.algorithm.samples == []  # type: ignore[attr-defined]
    assert inner.rejections == 2


class Recording:
    """A limit algorithm of 10 that records its samples."""

    def __init__(self) -> None:
        self.limit = 10
        self.samples: list[tuple[float, int, bool]] = []

    def update(self, rtt: float, in_flight: int, dropped: bool, now: float) -> int:
        self.samples.append((rtt, in_flight, dropped))
        return self.limit

    def replace(self, **changes: Any) -> Recording:
        return Recording()
