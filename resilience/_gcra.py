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
from typing import NamedTuple

__all__ = ["SLACK", "GcraParams", "RateLimitDecision", "decide", "gcra_admit", "gcra_step"]

# Float rounding must not refuse a request that is exactly on time (now + T - tau == now).
SLACK = 1e-9


class RateLimitDecision(NamedTuple):
    """The outcome of one acquisition, in the shape of the RateLimit header fields.

    ``allowed``: go ahead (after ``wait`` seconds, when the limiter was allowed to wait);
    ``limit``: the burst size (``burst + 1`` requests at once); ``remaining``: how many more
    could go right now; ``retry_after``: seconds until this request could be allowed (0.0 when
    allowed); ``reset_after``: seconds until the limiter is back to full burst;
    ``unavailable``: the store could not decide (Redis down) and ``allowed`` is its
    ``on_error`` choice, not a count (the numbers then say nothing about the quota).
    """

    allowed: bool
    limit: int
    remaining: int
    retry_after: float
    reset_after: float
    wait: float = 0.0
    unavailable: bool = False


class GcraParams(NamedTuple):
    """The frozen configuration of one limit: emission interval and tolerance, in seconds.

    ``name`` is the limiter's configured name (its ``key``), never a partition: stores put it
    in telemetry (an outage's warning, event and metric), where a partition (often an API key
    or an address) must not go.
    """

    emission: float
    tolerance: float
    limit: int
    name: str = "default"


def gcra_admit(
    emission: float, tolerance: float, tat: float | None, now: float, cost: int, max_wait: float
) -> tuple[float | None, float]:
    """The GCRA rule itself: ``(new_tat, wait)`` when admitted (store ``new_tat``, sleep
    ``wait``), or ``(None, retry_after)`` when refused. Allocation-free on the hot path.

    A request that would be allowed within ``max_wait`` seconds is admitted now with a
    ``wait``: its slot is reserved, and the caller sleeps before going ahead.
    """
    if tat is None or tat < now:
        tat = now
    new_tat = tat + emission * cost
    allow_at = new_tat - tolerance
    if allow_at <= now + SLACK:
        return new_tat, 0.0
    if allow_at <= now + max_wait + SLACK:
        return new_tat, allow_at - now
    return None, allow_at - now


def gcra_step(
    params: GcraParams, tat: float | None, now: float, cost: int, max_wait: float
) -> tuple[RateLimitDecision, float | None]:
    """One GCRA decision with all its numbers: return it and the TAT to store (or ``None``)."""
    new_tat, delay = gcra_admit(params.emission, params.tolerance, tat, now, cost, max_wait)
    if new_tat is not None:
        return decide(params, True, new_tat - now, delay), new_tat
    return decide(params, False, (now if tat is None or tat < now else tat) - now, delay), None


def decide(params: GcraParams, allowed: bool, ttl: float, delay: float) -> RateLimitDecision:
    """The decision's numbers from the step's outcome, wherever the step ran (here or in Redis).

    ``ttl`` is the stored TAT minus now; ``delay`` is the wait when allowed, the retry-after
    when refused.
    """
    if allowed:
        remaining = _remaining(params.tolerance - ttl + delay, params.emission)
        return RateLimitDecision(True, params.limit, remaining, 0.0, ttl, delay)
    remaining = _remaining(params.tolerance - ttl, params.emission)
    return RateLimitDecision(False, params.limit, remaining, delay, ttl)


def _remaining(room: float, emission: float) -> int:
    # A hair of slack so float rounding never costs a whole request.
    return max(0, math.floor(room / emission + 1e-9))
