"""What a server's adaptive concurrency limit says on the wire, for the ASGI and WSGI
``ConcurrencyLimitMiddleware``: a refused request gets 503 with ``Retry-After`` and a problem
document of the ``temporary-reduced-capacity`` type (the caller exceeded nothing: the server is
at the concurrency it can serve without queueing), logged on ``resilience.server``."""

from __future__ import annotations

from resilience import _events
from resilience._concurrency import AdaptiveConcurrency
from resilience._errors import ConcurrencyLimitedError
from resilience._idempotency.rules import REDUCED_CAPACITY, StoredResponse, problem
from resilience._ratelimit_http import whole_seconds

__all__ = ["check_limiter", "refused"]


def check_limiter(limiter: object) -> AdaptiveConcurrency:
    if not isinstance(limiter, AdaptiveConcurrency):
        raise TypeError(f"limiter must be an AdaptiveConcurrency, got {limiter!r}")
    return limiter


def refused(error: ConcurrencyLimitedError, method: str, path: str) -> StoredResponse:
    """The 503 answer to a request the limit refused (``Retry-After``: at least 1 s)."""
    retry_after = max(1, whole_seconds(error.retry_after))
    detail = f"the server is at its concurrency limit; retry after {retry_after} s"
    _events.log_decision("concurrency_limited", error.name, 503, method, path, detail)
    return problem(
        503, "Service Unavailable", detail, kind=REDUCED_CAPACITY, retry_after=retry_after
    )
