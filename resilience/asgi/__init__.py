"""ASGI middleware: exactly-once effects for keyed requests, deadlines from the wire, and rate
limits with their header fields.

Thin shells: the decisions are the same as ``resilience.wsgi``'s (and the rate limiter's), the
state is the store's. Stack them outermost first: rate limit, idempotency, deadline.

    app = IdempotencyMiddleware(DeadlineMiddleware(app), store=RedisStore(redis.asyncio...))
"""

# One private module per middleware; _shared holds the ASGI types and the helpers they share.

from resilience._public import publish as _publish
from resilience.asgi._deadline import DeadlineMiddleware
from resilience.asgi._idempotency import IdempotencyMiddleware
from resilience.asgi._ratelimit import RateLimitMiddleware

__all__ = ["DeadlineMiddleware", "IdempotencyMiddleware", "RateLimitMiddleware"]

_publish(__name__, globals(), __all__)
