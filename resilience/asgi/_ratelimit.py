"""ASGI ``RateLimitMiddleware``: admit within a limiter's rate, per caller, with the RateLimit
fields."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from resilience._ratelimit import RateLimiter
from resilience._ratelimit_http import LimitHeaders, choose_partition
from resilience.asgi._shared import ASGIApp, Message, Receive, Scope, Send, answer

__all__ = ["RateLimitMiddleware"]


class RateLimitMiddleware:
    """Admit requests within ``limiter``'s rate, each caller in its own bucket.

    Callers are told apart by the connection's peer address by default (IPv6 by its /64
    network, ``ipv6_prefix``). Behind reverse proxies, every request comes from a proxy: name
    the header they write the caller's address in (``client_header="X-Forwarded-For"``) and
    their addresses (``trusted_proxies=["10.0.0.0/8"]``); the header is believed only on
    requests from those addresses. ``partition(scope)`` says who calls instead (an API key, a
    tenant; where it answers ``None`` the address counts); ``shared=True`` puts everybody in
    one bucket, a global limit, as an explicit choice.

    Each request takes ``cost`` units; a refused one gets 429 with ``Retry-After`` and a
    ``quota-exceeded`` problem document naming the policy in ``violated-policies``, without
    reaching the app; if the limiter's store is down and its ``on_error`` is "deny", 503 with
    the ``temporary-reduced-capacity`` type. Refusals are logged on ``resilience.server`` at
    INFO. Every response carries ``RateLimit-Policy: "<policy>";q=<burst + 1>;w=<s>`` (``q``
    requests at once, refilled over ``w`` seconds) and ``RateLimit``. The limiter's store must
    not block the event loop (``MemoryStore``, or ``RedisStore`` over ``redis.asyncio``).
    """

    def __init__(
        self,
        app: ASGIApp,
        limiter: RateLimiter,
        *,
        partition: Callable[[Scope], str | None] | None = None,
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
        self._header = header.encode("latin-1") if header is not None else None
        self.partition = partition
        self.cost = cost

    def _caller(self, scope: Scope) -> str | None:
        if self.partition is not None:
            caller = self.partition(scope)
            if caller is not None:
                return caller
        address = self._address
        if address is None:
            return None  # shared=True
        client = scope.get("client")
        forwarded = None
        if self._header is not None:
            values = [v for k, v in scope["headers"] if k.lower() == self._header]
            forwarded = b",".join(values).decode("latin-1") if values else None
        return address.of(client[0] if client else None, forwarded)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        decision = await self.rules.limiter.try_acquire_async(
            self.cost, partition=self._caller(scope)
        )
        if not decision.allowed:
            await answer(send, self.rules.refused(decision, scope["method"], scope["path"]))
            return
        extra = self.rules.headers(decision)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
