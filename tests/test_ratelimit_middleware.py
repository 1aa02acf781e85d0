"""RateLimitMiddleware (ASGI on uvicorn, WSGI on threaded wsgiref, both on 127.0.0.1): per-caller
limits, 429 with Retry-After, and the RateLimit header fields on every answer."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from resilience import RateLimited, RateLimiter
from resilience import asgi as resilience_asgi
from resilience import wsgi as resilience_wsgi
from resilience._gcra import RateLimitDecision
from resilience._ratelimit_http import LimitHeaders
from resilience.testing import EventRecorder, FakeClock, serve_asgi, serve_wsgi


async def hello_asgi(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"x-app", b"hi")]})
    await send({"type": "http.response.body", "body": b"hello"})


def hello_wsgi(environ: Any, start_response: Any) -> list[bytes]:
    start_response("200 OK", [("X-App", "hi")])
    return [b"hello"]


@pytest.fixture(params=["asgi", "wsgi"])
def served(request: pytest.FixtureRequest, clock: FakeClock) -> Iterator[str]:
    """2 requests per minute per caller (burst 1: two at once), callers told by X-Client."""
    limiter = RateLimiter(2, per=60.0, burst=1, name="api", clock=clock)
    if request.param == "asgi":

        def caller(scope: Any) -> str | None:
            return dict(scope["headers"]).get(b"x-client", b"").decode() or None

        app: Any = resilience_asgi.RateLimitMiddleware(
            hello_asgi, limiter, partition=caller, policy="per-client"
        )
        with serve_asgi(app) as url:
            yield url
    else:
        app = resilience_wsgi.RateLimitMiddleware(
            hello_wsgi,
            limiter,
            partition=lambda environ: environ.get("HTTP_X_CLIENT"),
            policy="per-client",
        )
        with serve_wsgi(app) as url:
            yield url


def get(url: str, client: str) -> httpx.Response:
    return httpx.get(url, headers={"X-Client": client})


def test_each_caller_gets_its_own_limit_with_header_fields(served: str) -> None:
    """Two requests pass with r=1 then r=0; the third gets 429 + Retry-After (30 s: one
    emission interval) without reaching the app; another caller is not affected."""
    with EventRecorder() as recorder:
        first, second, third = (get(served, "alice") for _ in range(3))
        other = get(served, "bob")
    assert [r.status_code for r in (first, second, third, other)] == [200, 200, 429, 200]
    assert first.text == "hello" and first.headers["x-app"] == "hi"
    assert first.headers["ratelimit-policy"] == '"per-client";q=2;w=60'
    assert first.headers["ratelimit"] == '"per-client";r=1;t=30'
    assert second.headers["ratelimit"] == '"per-client";r=0;t=60'
    assert third.headers["retry-after"] == "30"
    assert third.headers["ratelimit"] == '"per-client";r=0;t=30'
    assert third.headers["content-type"] == "application/problem+json"
    assert third.json()["status"] == 429 and "x-app" not in third.headers
    assert other.headers["ratelimit"] == '"per-client";r=1;t=30'
    assert [event.retry_after for event in recorder.of(RateLimited)] == [30.0]


def test_bad_configuration_names_the_parameter(clock: FakeClock) -> None:
    limiter = RateLimiter(1, clock=clock)
    with pytest.raises(ValueError, match="policy"):
        resilience_asgi.RateLimitMiddleware(hello_asgi, limiter, policy='a"b')
    with pytest.raises(TypeError, match="limiter"):
        resilience_wsgi.RateLimitMiddleware(hello_wsgi, "10/s")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cost"):
        resilience_wsgi.RateLimitMiddleware(hello_wsgi, limiter, cost=5)
    with pytest.raises(TypeError, match="partition"):
        resilience_asgi.RateLimitMiddleware(hello_asgi, limiter, partition="ip")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="partition"):
        limiter.try_acquire(partition="")


def test_headers_follow_the_decision() -> None:
    """q is the burst, w the time it takes to drain; t rounds up."""
    rules = LimitHeaders(RateLimiter(10, per=1.0, burst=4), "api")
    allowed = RateLimitDecision(True, 5, 3, 0.0, 0.21)
    assert rules.headers(allowed) == [
        (b"ratelimit-policy", b'"api";q=5;w=1'),
        (b"ratelimit", b'"api";r=3;t=1'),
    ]
    refused = rules.refused(RateLimitDecision(False, 5, 0, 0.05, 0.5))
    assert refused.status == 429
    assert (b"retry-after", b"1") in refused.headers  # at least one second
