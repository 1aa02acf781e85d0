"""WSGI middleware: exactly-once effects for keyed requests, deadlines from the wire, rate
limits with their header fields, and an adaptive concurrency limit (503 past it).

The twins of ``resilience.asgi`` for Flask, Django and other WSGI applications, with the same
decisions; the state is the store's (``MemoryStore``, or ``RedisStore`` over a synchronous
``redis.Redis``).
"""

# One private module per middleware; _shared holds the WSGI types and the helpers they share.

from resilience._public import publish as _publish
from resilience.wsgi._deadline import DeadlineMiddleware
from resilience.wsgi._idempotency import IdempotencyMiddleware
from resilience.wsgi._limiter import ConcurrencyLimitMiddleware
from resilience.wsgi._ratelimit import RateLimitMiddleware

__all__ = [
    "ConcurrencyLimitMiddleware",
    "DeadlineMiddleware",
    "IdempotencyMiddleware",
    "RateLimitMiddleware",
]

_publish(__name__, globals(), __all__)
