"""ASGI ``RateLimitMiddleware``: admit within a limiter's rate, with the RateLimit fields."""

from __future__ import annotations

from collections.abc import Callable

from resilience._ratelimit import RateLimiter
from resilience._ratelimit_http import LimitHeaders, check_options
from resilience.asgi._shared import ASGIApp, Message, Receive, Scope, Send, answer

__all__ = ["RateLimitMiddleware"]


class RateLimitMiddleware:
    """Admit requests within ``limiter``'s rate, per caller if ``partition`` says who calls.

    Each request takes ``cost`` units (``partition(scope)`` → a caller id, or ``None`` for the
    shared limit); a refused one gets 429 with ``Retry-After`` and a problem document, without
    reaching the app. Every response carries ``RateLimit-Policy: "<policy>";q=<burst + 1>;w=<s>``
    (``q`` requests at once, refilled over ``w`` seconds) and ``RateLimit``. The limiter's
    store must not block the event loop (``MemoryStore``, or ``RedisStore`` over ``redis.asyncio``).
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
            await answer(send, self.rules.refused(decision))
            return
        extra = self.rules.headers(decision)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
