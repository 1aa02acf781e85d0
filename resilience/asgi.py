"""ASGI middleware: exactly-once effects for keyed requests, deadlines from the wire, and rate
limits with their header fields.

Thin shells: the decisions are ``resilience._idempotency``'s, the state is the store's.

    app = IdempotencyMiddleware(DeadlineMiddleware(app), store=RedisStore(redis.asyncio...))
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from resilience._clock import SYSTEM_CLOCK, Clock
from resilience._context import (
    end_serving_key,
    enter_deadline,
    exit_deadline,
    parse_deadline,
    serving_key,
)
from resilience._idempotency import (
    Idempotency,
    StoredResponse,
    Verdict,
    fingerprint,
    header_value,
)
from resilience._ratelimit import RateLimiter
from resilience._ratelimit_http import LimitHeaders, check_options
from resilience._validate import check_duration

__all__ = ["DeadlineMiddleware", "IdempotencyMiddleware", "RateLimitMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class IdempotencyMiddleware:
    """Run each keyed POST/PATCH once; answer its retries with the stored response.

    See ``resilience._idempotency`` for the rules (409 while running, 422 on a reused key, 400
    on a malformed one, stored replay with ``Idempotent-Replayed: true``). The store must
    answer without blocking the event loop: ``MemoryStore``, or ``RedisStore`` over a
    ``redis.asyncio`` client. The response of a claimed request is streamed to the client as
    the application sends it, and kept in memory until it is stored.
    """

    def __init__(
        self,
        app: ASGIApp,
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
        if getattr(self.rules.store, "is_async", True) is False:
            raise TypeError(
                "store: the ASGI middleware needs a store that does not block the event loop "
                "(MemoryStore, or RedisStore over redis.asyncio)"
            )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rules = self.rules
        method = scope["method"]
        screened = rules.screen(method, header_value(scope["headers"], b"idempotency-key"), scope)
        if isinstance(screened, Verdict):
            if screened.run:
                await self.app(scope, receive, send)
            else:
                await _answer(send, screened.response)
            return
        body = await _read_body(receive, rules.max_body)
        if body is None:
            await _answer(send, rules.too_large().response)
            return
        query = scope.get("query_string", b"").decode("latin-1")
        store = rules.store
        claim = await store.idempotency_claim_async(
            screened, fingerprint(method, scope["path"], query, body), rules.lease
        )
        verdict = rules.judge(screened, claim)
        if not verdict.run:
            await _answer(send, verdict.response)
            return
        await self._run(scope, receive, send, body, screened, verdict.token)

    async def _run(
        self, scope: Scope, receive: Receive, send: Send, body: bytes, key: str, token: str | None
    ) -> None:
        rules, store = self.rules, self.rules.store
        started: list[Message] = []
        chunks: list[bytes] = []
        body_given = False

        async def receive_again() -> Message:  # the body was read to fingerprint it
            nonlocal body_given
            if not body_given:
                body_given = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        async def keep(message: Message) -> None:
            if message["type"] == "http.response.start":
                started.append(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        serving = serving_key(key)  # outgoing resilient calls derive their keys from it
        try:
            await self.app(scope, receive_again, keep)
        except BaseException:
            if token is not None:  # cancelled or failed: the retry must run afresh
                await store.idempotency_release_async(key, token)
            raise
        finally:
            end_serving_key(serving)
        if token is None:
            return  # the store was down and its on_error said allow: nothing to keep
        if started and rules.keeps(started[0]["status"]):
            stored = StoredResponse(
                started[0]["status"],
                [tuple(h) for h in started[0].get("headers", [])],
                b"".join(chunks),
            )
            await store.idempotency_complete_async(key, token, stored.encode(), rules.ttl)
        else:
            await store.idempotency_release_async(key, token)


class DeadlineMiddleware:
    """Serve each request within the time its caller has left.

    Reads ``Request-Timeout-Ms`` (what ``ResilientTransport`` sends; ``header``), capped at
    ``maximum`` seconds, and publishes it as the deadline of the request's context, so
    ``resilience.remaining()``, ``Retry`` and outgoing ``ResilientTransport`` calls see the
    budget and pass the rest on. A request that arrives with no time left gets 504 without
    running. A missing or malformed header means no deadline (or ``default`` seconds).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        header: str = "Request-Timeout-Ms",
        default: float | None = None,
        maximum: float | None = None,
        clock: Clock | None = None,
    ) -> None:
        check_duration(default, "default", allow_zero=False)
        check_duration(maximum, "maximum", allow_zero=False)
        self.app = app
        self._header = header.lower().encode("latin-1")
        self.default = default
        self.maximum = maximum
        self._clock = clock or SYSTEM_CLOCK

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        seconds = parse_deadline(
            header_value(scope["headers"], self._header), self.default, self.maximum
        )
        if seconds is None:
            await self.app(scope, receive, send)
            return
        if seconds <= 0.0:
            await _answer(send, _expired())
            return
        token, _ = enter_deadline(seconds, self._clock)
        try:
            await self.app(scope, receive, send)
        finally:
            exit_deadline(token)


class RateLimitMiddleware:
    """Admit requests within ``limiter``'s rate, per caller if ``partition`` says who calls.

    Each request takes ``cost`` units (``partition(scope)`` → a caller id, or ``None`` for the
    shared limit); a refused one gets 429 with ``Retry-After`` and a problem document, without
    reaching the app. Every response carries ``RateLimit-Policy`` and ``RateLimit`` (named
    ``policy``; see ``resilience._ratelimit_http``). The limiter's store must not block the
    event loop (``MemoryStore``, or ``RedisStore`` over ``redis.asyncio``).
    """

    def __init__(
        self,
        app: ASGIApp,
        limiter: RateLimiter,
        *,
        partition: Callable[[Scope], str | None] | None = None,
        cost: int = 1,
        policy: str = "default",
    ) -> None:
        self.app = app
        self.rules = LimitHeaders(limiter, policy)
        check_options(limiter, partition, cost)
        self.partition = partition
        self.cost = cost

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        caller = self.partition(scope) if self.partition is not None else None
        decision = await self.rules.limiter.try_acquire_async(self.cost, partition=caller)
        if not decision.allowed:
            await _answer(send, self.rules.refused(decision))
            return
        extra = self.rules.headers(decision)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _expired() -> StoredResponse:
    return StoredResponse(504, [(b"content-length", b"0")], b"")


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or ``None`` once it passes ``limit`` bytes."""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(parts)  # the client left; the app will see the disconnect
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


async def _answer(send: Send, response: StoredResponse | None) -> None:
    assert response is not None
    await send(
        {"type": "http.response.start", "status": response.status, "headers": response.headers}
    )
    await send({"type": "http.response.body", "body": response.body})
