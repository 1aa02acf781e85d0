"""WSGI middleware: exactly-once effects for keyed requests, deadlines from the wire, and rate
limits with their header fields.

The twins of ``resilience.asgi`` for Flask, Django and other WSGI applications; the decisions
are ``resilience._idempotency``'s, the state is the store's (``MemoryStore``, or
``RedisStore`` over a synchronous ``redis.Redis``).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from resilience._clock import SYSTEM_CLOCK, Clock
from resilience._context import (
    end_serving_key,
    enter_deadline,
    exit_deadline,
    parse_deadline,
    serving_key,
)
from resilience._idempotency import Idempotency, StoredResponse, Verdict, fingerprint
from resilience._ratelimit import RateLimiter
from resilience._ratelimit_http import LimitHeaders, check_options
from resilience._validate import check_duration

__all__ = ["DeadlineMiddleware", "IdempotencyMiddleware", "RateLimitMiddleware"]

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class IdempotencyMiddleware:
    """Run each keyed POST/PATCH once; answer its retries with the stored response.

    Same rules and options as ``resilience.asgi.IdempotencyMiddleware``. The response of a
    claimed request is buffered (to store it) before it is returned.
    """

    def __init__(
        self,
        app: WSGIApp,
        *,
        store: Any = None,
        methods: Iterable[str] = ("POST", "PATCH"),
        required: bool = False,
        ttl: float = 86_400.0,
        lease: float = 60.0,
        max_body: int = 1 << 20,
        key_scope: Callable[[Any], str] | None = None,
        name: str = "idempotency",
    ) -> None:
        self.app = app
        # Every keyword argument above, passed on as is (the signature stays explicit).
        self.rules = Idempotency(**{k: v for k, v in locals().items() if k not in ("self", "app")})
        if getattr(self.rules.store, "is_async", False) is True:
            raise TypeError(
                "store: the WSGI middleware needs a synchronous store "
                "(MemoryStore, or RedisStore over redis.Redis)"
            )

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        rules = self.rules
        method = environ["REQUEST_METHOD"]
        screened = rules.screen(method, environ.get("HTTP_IDEMPOTENCY_KEY"), environ)
        if isinstance(screened, Verdict):
            if screened.run:
                return self.app(environ, start_response)
            return _answer(start_response, screened.response)
        body = _read_body(environ, rules.max_body)
        if body is None:
            return _answer(start_response, rules.too_large().response)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        store = rules.store
        claim = store.idempotency_claim(
            screened,
            fingerprint(method, path, environ.get("QUERY_STRING", ""), body),
            rules.lease,
        )
        verdict = rules.judge(screened, claim)
        if not verdict.run:
            return _answer(start_response, verdict.response)
        return self._run(environ, start_response, screened, verdict.token)

    def _run(
        self, environ: dict[str, Any], start_response: StartResponse, key: str, token: str | None
    ) -> Iterable[bytes]:
        rules, store = self.rules, self.rules.store
        started: list[tuple[str, list[tuple[str, str]]]] = []

        def keep(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            started[:] = [(status, headers)]
            return start_response(status, headers, exc_info)

        serving = serving_key(key)  # outgoing resilient calls derive their keys from it
        try:
            result = self.app(environ, keep)
            try:
                body = b"".join(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        except BaseException:
            if token is not None:
                store.idempotency_release(key, token)
            raise
        finally:
            end_serving_key(serving)
        if token is not None:
            status = int(started[0][0].split(" ", 1)[0]) if started else 0
            if started and rules.keeps(status):
                headers = [
                    (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in started[0][1]
                ]
                stored = StoredResponse(status, headers, body)
                store.idempotency_complete(key, token, stored.encode(), rules.ttl)
            else:
                store.idempotency_release(key, token)
        return [body]


class DeadlineMiddleware:
    """Serve each request within the time its caller has left (``Request-Timeout-Ms``).

    Same behaviour and options as ``resilience.asgi.DeadlineMiddleware``; the deadline lives
    in the context of the thread serving the request, for as long as the app runs.
    """

    def __init__(
        self,
        app: WSGIApp,
        *,
        header: str = "Request-Timeout-Ms",
        default: float | None = None,
        maximum: float | None = None,
        clock: Clock | None = None,
    ) -> None:
        check_duration(default, "default", allow_zero=False)
        check_duration(maximum, "maximum", allow_zero=False)
        self.app = app
        self._key = "HTTP_" + header.upper().replace("-", "_")
        self.default = default
        self.maximum = maximum
        self._clock = clock or SYSTEM_CLOCK

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        seconds = parse_deadline(environ.get(self._key), self.default, self.maximum)
        if seconds is None:
            return self.app(environ, start_response)
        if seconds <= 0.0:
            return _answer(start_response, StoredResponse(504, [(b"content-length", b"0")], b""))
        token, _ = enter_deadline(seconds, self._clock)
        try:
            result = self.app(environ, start_response)
            try:  # run the app to completion while the deadline is in force
                return [b"".join(result)]
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        finally:
            exit_deadline(token)


class RateLimitMiddleware:
    """Admit requests within ``limiter``'s rate, per caller if ``partition`` says who calls.

    The twin of ``resilience.asgi.RateLimitMiddleware`` (same options); ``partition`` receives
    the WSGI environ. The limiter's store must be synchronous (``MemoryStore``, or
    ``RedisStore`` over ``redis.Redis``).
    """

    def __init__(
        self,
        app: WSGIApp,
        limiter: RateLimiter,
        *,
        partition: Callable[[dict[str, Any]], str | None] | None = None,
        cost: int = 1,
        policy: str = "default",
    ) -> None:
        self.app = app
        self.rules = LimitHeaders(limiter, policy)
        check_options(limiter, partition, cost)
        self.partition = partition
        self.cost = cost

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        caller = self.partition(environ) if self.partition is not None else None
        decision = self.rules.limiter.try_acquire(self.cost, partition=caller)
        if not decision.allowed:
            return _answer(start_response, self.rules.refused(decision))
        extra = [
            (k.decode("latin-1"), v.decode("latin-1")) for k, v in self.rules.headers(decision)
        ]

        def start_with_headers(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            return start_response(status, [*headers, *extra], exc_info)

        return self.app(environ, start_with_headers)


def _read_body(environ: dict[str, Any], limit: int) -> bytes | None:
    """The request body (``CONTENT_LENGTH`` bytes), or ``None`` if it passes ``limit``."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > limit:
        return None
    return environ["wsgi.input"].read(length) if length > 0 else b""


def _answer(start_response: StartResponse, response: StoredResponse | None) -> list[bytes]:
    assert response is not None
    reason = _reason(response.status)
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in response.headers]
    start_response(f"{response.status} {reason}".rstrip(), headers)
    return [response.body]


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
