"""ASGI middleware: exactly-once effects for keyed requests, deadlines from the wire, rate
limits with their header fields, and an adaptive concurrency limit (503 past it).

Thin shells: the decisions are the same as ``resilience.wsgi``'s (and the rate limiter's), the
state is the store's. Stack them outermost first: rate limit, concurrency limit, idempotency,
deadline.

    app = IdempotencyMiddleware(
        DeadlineMiddleware(app), store=RedisStore(redis.asyncio...), name="payments"
    )
"""

# One private module per middleware; _shared holds the ASGI types and the helpers they share.

from resilience._public import publish as _publish
from resilience.asgi._deadline import DeadlineMiddleware
from resilience.asgi._idempotency import IdempotencyMiddleware
from resilience.asgi._limiter import ConcurrencyLimitMiddleware
from resilience.asgi._ratelimit import RateLimitMiddleware

__all__ = [
    "ConcurrencyLimitMiddleware",
    "DeadlineMiddleware",
    "IdempotencyMiddleware",
    "RateLimitMiddleware",
]

_publish(__name__, globals(), __all__)
