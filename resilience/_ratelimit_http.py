"""What a server's rate limiter says on the wire (draft-ietf-httpapi-ratelimit-headers-10).

Sans-IO, shared by the ASGI and WSGI ``RateLimitMiddleware``: every answered request carries
``RateLimit-Policy: "<policy>";q=<burst + 1>;w=<seconds>`` and
``RateLimit: "<policy>";r=<remaining>;t=<seconds>``; a refused one is a 429 problem document
(type ``quota-exceeded``, with ``violated-policies``) and ``Retry-After``, which the draft
says clients must prefer over ``t``. When the limiter's store is unavailable and its
``on_error`` says "deny", the answer is 503 with the draft's ``temporary-reduced-capacity``
type instead: the caller did not exceed anything. Every refusal is logged on
``resilience.server`` (``_events.log_decision``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any, Final

from resilience import _events
from resilience._client_address import ClientAddress
from resilience._gcra import RateLimitDecision
from resilience._idempotency.rules import REDUCED_CAPACITY, StoredResponse, problem
from resilience._ratelimit import RateLimiter

__all__ = ["LimitHeaders", "choose_partition", "whole_seconds"]

_SF_STRING_CHARS: Final = re.compile(r"^[\x20-\x21\x23-\x5b\x5d-\x7e]+$")  # no quote, backslash
_QUOTA_EXCEEDED: Final = "https://iana.org/assignments/http-problem-types#quota-exceeded"
_OUTAGE_RETRY_AFTER: Final = 1  # seconds: as the idempotency middleware's 503
# A TAT is a sum of float steps: at a monotonic clock of 1000 s, ten steps of 0.1 s make a
# reset of 1.0000000000002 s, and near the epoch (1.7e9 s) errors reach 1e-6 s; ceil() then
# said 2 where 1 was meant. Forgive up to a millisecond of rounding before rounding up.
_ROUNDING: Final = 1e-3


def whole_seconds(seconds: float) -> int:
    """``seconds`` rounded up to a whole number (delay-seconds), float rounding forgiven."""
    return max(0, math.ceil(seconds - _ROUNDING))


class LimitHeaders:
    """The header fields and the refusals for one limiter, named ``policy``.

    GCRA admits ``burst + 1`` requests at once and then one per emission interval, so the policy
    advertises ``q = burst + 1`` over ``w`` = the time that burst takes to drain (at least 1 s,
    as the draft wants a positive integer). ``t`` is when the quota is whole again (allowed) or
    when the refused request could go (refused), rounded up. A decision the store could not
    make (``unavailable``) carries no ``RateLimit`` field: its numbers would be made up.
    """

    __slots__ = ("_name", "_policy", "limiter", "policy")

    def __init__(self, limiter: RateLimiter, policy: str) -> None:
        if not isinstance(limiter, RateLimiter):
            raise TypeError(f"limiter must be a RateLimiter, got {limiter!r}")
        if not isinstance(policy, str) or not _SF_STRING_CHARS.match(policy):
            raise ValueError(
                f"policy must be printable ASCII without quotes or backslashes, got {policy!r}"
            )
        self.limiter = limiter
        self.policy = policy
        limit = limiter.burst + 1
        window = max(1, whole_seconds(limiter.per / limiter.rate * limit))
        self._name = f'"{policy}"'
        self._policy = (b"ratelimit-policy", f"{self._name};q={limit};w={window}".encode())

    def headers(self, decision: RateLimitDecision) -> list[tuple[bytes, bytes]]:
        if decision.unavailable:
            return [self._policy]
        seconds = decision.reset_after if decision.allowed else decision.retry_after
        state = f"{self._name};r={decision.remaining};t={whole_seconds(seconds)}"
        return [self._policy, (b"ratelimit", state.encode())]

    def refused(self, decision: RateLimitDecision, method: str, path: str) -> StoredResponse:
        """The answer to a request ``decision`` refused, logged on ``resilience.server``."""
        if decision.unavailable:
            status, retry_after, kind = 503, _OUTAGE_RETRY_AFTER, REDUCED_CAPACITY
            title, why = "Service Unavailable", "store_unavailable"
            detail = f"the rate limit cannot be checked right now; retry after {retry_after} s"
        else:
            status, retry_after, kind = (
                429,
                max(1, whole_seconds(decision.retry_after)),
                _QUOTA_EXCEEDED,
            )
            title, why = "Too Many Requests", "rate_limited"
            detail = f"rate limit exceeded; retry after {retry_after} s"
        _events.log_decision(why, self.policy, status, method, path, detail)
        response = problem(
            status,
            title,
            detail,
            kind=kind,
            retry_after=retry_after,
            members={"violated-policies": [self.policy]},
        )
        response.headers.extend(self.headers(decision))
        return response


def choose_partition(
    limiter: RateLimiter,
    partition: Callable[[Any], str | None] | None,
    cost: int,
    shared: bool,
    trusted_proxies: Any,
    client_header: str | None,
    ipv6_prefix: int,
) -> ClientAddress | None:
    """Check the middleware's own arguments (both shells, at construction) and return how it
    tells callers apart by address: by default, and where ``partition`` answers ``None``
    (``None``: ``shared=True``, one bucket)."""
    if partition is not None and not callable(partition):
        raise TypeError(f"partition must be a callable or None, got {partition!r}")
    if not isinstance(shared, bool):
        raise TypeError(f"shared must be True or False, got {shared!r}")
    limiter._check_cost(cost)
    address = ClientAddress(
        trusted_proxies=trusted_proxies, client_header=client_header, ipv6_prefix=ipv6_prefix
    )
    if not shared:
        return address
    if partition is not None:
        raise ValueError("shared=True is one bucket for all; give partition or shared, not both")
    if address.header is not None:
        raise ValueError(
            "client_header and trusted_proxies tell callers apart by address: they do not "
            "apply with shared=True"
        )
    return None
