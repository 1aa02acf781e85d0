"""WSGI ``RateLimitMiddleware``: admit within a limiter's rate, with the RateLimit fields."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from resilience._ratelimit import RateLimiter
from resilience._ratelimit_http import LimitHeaders, check_options
from resilience.wsgi._shared import StartResponse, WSGIApp, answer

__all__ = ["RateLimitMiddleware"]


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
            return answer(start_response, self.rules.refused(decision))
        extra = [
            (k.decode("latin-1"), v.decode("latin-1")) for k, v in self.rules.headers(decision)
        ]

        def start_with_headers(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            return start_response(status, [*headers, *extra], exc_info)

        return self.app(environ, start_with_headers)
