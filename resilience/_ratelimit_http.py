"""What a server's rate limiter says on the wire (draft-ietf-httpapi-ratelimit-headers-10).

Sans-IO, shared by the ASGI and WSGI ``RateLimitMiddleware``: every answered request carries
``RateLimit-Policy: "<policy>";q=<burst + 1>;w=<seconds>`` and
``RateLimit: "<policy>";r=<remaining>;t=<seconds>``; a refused one is a 429 problem document
(type ``quota-exceeded``) with ``Retry-After``, which the draft says clients must prefer over
``t``.
"""

from __future__ import annotations

import math
import re
from typing import Final

from resilience._gcra import RateLimitDecision
from resilience._idempotency import StoredResponse, problem
from resilience._ratelimit import RateLimiter

__all__ = ["LimitHeaders", "check_options"]

_SF_STRING_CHARS: Final = re.compile(r"^[\x20-\x21\x23-\x5b\x5d-\x7e]+$")  # no quote, backslash
_QUOTA_EXCEEDED: Final = "https://iana.org/assignments/http-problem-types#quota-exceeded"


class LimitHeaders:
    """The header fields and the refusal for one limiter, named ``policy``.

    GCRA admits ``burst + 1`` requests at once and then one per emission interval, so the policy
    advertises ``q = burst + 1`` over ``w`` = the time that burst takes to drain (at least 1 s,
    as the draft wants a positive integer). ``t`` is when the quota is whole again (allowed) or
    when the refused request could go (refused), rounded up.
    """

    __slots__ = ("_name", "_policy", "limiter")

    def __init__(self, limiter: RateLimiter, policy: str) -> None:
        if not isinstance(limiter, RateLimiter):
            raise TypeError(f"limiter must be a RateLimiter, got {limiter!r}")
        if not isinstance(policy, str) or not _SF_STRING_CHARS.match(policy):
            raise ValueError(
                f"policy must be printable ASCII without quotes or backslashes, got {policy!r}"
            )
        self.limiter = limiter
        limit = limiter.burst + 1
        window = max(1, math.ceil(limiter.per / limiter.rate * limit - 1e-9))
        self._name = f'"{policy}"'
        self._policy = (b"ratelimit-policy", f"{self._name};q={limit};w={window}".encode())

    def headers(self, decision: RateLimitDecision) -> list[tuple[bytes, bytes]]:
        seconds = decision.reset_after if decision.allowed else decision.retry_after
        state = f"{self._name};r={decision.remaining};t={math.ceil(seconds)}"
        return [self._policy, (b"ratelimit", state.encode())]

    def refused(self, decision: RateLimitDecision) -> StoredResponse:
        retry_after = max(1, math.ceil(decision.retry_after))
        detail = f"rate limit exceeded; retry after {retry_after} s"
        response = problem(429, "Too Many Requests", detail, kind=_QUOTA_EXCEEDED)
        response.headers.extend([(b"retry-after", b"%d" % retry_after), *self.headers(decision)])
        return response


def check_options(limiter: RateLimiter, partition: object, cost: int) -> None:
    """The middleware's own arguments, checked at construction (both shells)."""
    if partition is not None and not callable(partition):
        raise TypeError(f"partition must be a callable or None, got {partition!r}")
    limiter._check_cost(cost)
