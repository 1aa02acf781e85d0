"""GCRA (the generic cell rate algorithm, as in redis-cell): the sans-IO core of rate limiting.

GCRA keeps one number per key, the theoretical arrival time (TAT) of the next request. With
emission interval ``T = per / rate`` and tolerance ``tau = T * (burst + 1)``, a request of
``cost`` at ``now`` computes ``new_tat = max(tat, now) + T * cost``; it is allowed when
``new_tat - tau <= now``, and then ``new_tat`` is stored. Otherwise it may go after
``retry_after = new_tat - tau - now``. The result is a smooth rate with a burst allowance, in
O(1) time and space, with no timers and nothing to refill. Stores run ``gcra_step`` atomically
(in memory under a lock; in Redis as the same arithmetic in Lua, on the server's clock).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["GcraParams", "RateLimitDecision", "gcra_step"]

# Float rounding must not refuse a request that is exactly on time (now + T - tau == now).
_SLACK = 1e-9


@dataclass(frozen=True, slots=True)
class RateLimitDecision:
    """The outcome of one acquisition, in the shape of the RateLimit header fields.

    ``allowed``: go ahead (after ``wait`` seconds, when the limiter was allowed to wait);
    ``limit``: the burst size (``burst + 1`` requests at once); ``remaining``: how many more
    could go right now; ``retry_after``: seconds until this request could be allowed (0.0 when
    allowed); ``reset_after``: seconds until the limiter is back to full burst.
    """

    allowed: bool
    limit: int
    remaining: int
    retry_after: float
    reset_after: float
    wait: float = 0.0


@dataclass(frozen=True, slots=True)
class GcraParams:
    """The frozen configuration of one limit: emission interval and tolerance, in seconds."""

    emission: float
    tolerance: float
    limit: int


def gcra_step(
    params: GcraParams, tat: float | None, now: float, cost: int, max_wait: float
) -> tuple[RateLimitDecision, float | None]:
    """One GCRA decision: return it and the TAT to store (``None``: store nothing).

    A request that would be allowed within ``max_wait`` seconds is admitted now with
    ``wait`` set: its slot is reserved, and the caller sleeps before going ahead.
    """
    emission, tolerance = params.emission, params.tolerance
    tat = now if tat is None or tat < now else tat
    new_tat = tat + emission * cost
    allow_at = new_tat - tolerance
    if allow_at <= now + max_wait + _SLACK:
        wait = allow_at - now if allow_at > now + _SLACK else 0.0
        ttl = new_tat - now
        remaining = _remaining(tolerance - ttl + wait, emission)
        return RateLimitDecision(True, params.limit, remaining, 0.0, ttl, wait), new_tat
    ttl = tat - now
    return (
        RateLimitDecision(
            False, params.limit, _remaining(tolerance - ttl, emission), allow_at - now, ttl
        ),
        None,
    )


def _remaining(room: float, emission: float) -> int:
    # A hair of slack so float rounding never costs a whole request.
    return max(0, math.floor(room / emission + 1e-9))
