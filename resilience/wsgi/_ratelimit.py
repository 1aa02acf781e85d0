"""WSGI ``RateLimitMiddleware``: admit within a limiter's rate, per caller, with the RateLimit
fields."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from resilience._ratelimit import RateLimiter
from resilience._ratelimit_http import LimitHeaders, choose_partition
from resilience.wsgi._shared import StartResponse, WSGIApp, answer

__all__ = ["RateLimitMiddleware"]


class RateLimitMiddleware:
    """Admit requests within ``limiter``'s rate, each caller in its own bucket.

    The twin of ``resilience.asgi.RateLimitMiddleware`` (same options and answers; the peer
    address is ``REMOTE_ADDR``); ``partition`` receives the WSGI environ. The limiter's store
    must be synchronous (``MemoryStore``, or ``RedisStore`` over ``redis.Redis``).
    """

    def __init__(
        self,
        app: WSGIApp,
        limiter: RateLimiter,
        *,
        partition: Callable[[dict[str, Any]], str | None] | None = None,
        shared: bool = False,
        trusted_proxies: Iterable[str] = (),
        client_header: str | None = None,
        ipv6_prefix: int = 64,
        cost: int = 1,
        policy: str = "default",
    ) -> None:
        self.app = app
        self.rules = LimitHeaders(limiter, policy)
        self._address = choose_partition(
            limiter, partition, cost, shared, trusted_proxies, client_header, ipv6_prefix
        )
        header = self._address.header if self._address is not None else None
        self._key = "HTTP_" + header.upper().replace("-", "_") if header is not None else None
        self.partition = partition
        self.cost = cost

    def _caller(self, environ: dict[str, Any]) -> str | None:
        if self.partition is not None:
            caller = self.partition(environ)
            if caller is not None:
                return caller
        address = self._address
        if address is None:
            return None  # shared=True
        forwarded = environ.get(self._key) if self._key is not None else None
        return address.of(environ.get("REMOTE_ADDR"), forwarded)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        decision = self.rules.limiter.try_acquire(self.cost, partition=self._caller(environ))
        if not decision.allowed:
            path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
            refusal = self.rules.refused(decision, environ.get("REQUEST_METHOD", ""), path)
            return answer(start_response, refusal)
        extra = [
            (k.decode("latin-1"), v.decode("latin-1")) for k, v in self.rules.headers(decision)
        ]

        def start_with_headers(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            return start_response(status, [*headers, *extra], exc_info)

        return self.app(environ, start_with_headers)
