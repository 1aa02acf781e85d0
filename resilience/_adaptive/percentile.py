"""A latency percentile over a sliding time window: what ``Hedge(delay="p95")`` waits for.

Latencies go into a histogram of geometric buckets (``bucket(x) = ceil(log(x / LOW) /
log(GROWTH))``, so each bucket spans 5 %), kept per slice of the window by
``resilience._sliding`` (an entry is forgotten between ``window`` and ``1.1 * window`` seconds
after it was added). ``value(now)`` is the upper edge of the bucket holding the sample of rank
``ceil(q * n)`` among the ``n`` in the window: never below the true percentile, at most 5 % above
it (latencies below 100 µs count as 100 µs, above ~1.4 hours as that). While the window holds
fewer than ``warmup`` samples it is ``None``: too few to say what "slow" means. The result is
never below ``floor``.

Sans-IO: the caller passes ``now`` and holds the owner's lock. ``add`` is O(1); ``value`` is
one C-speed pass over the bucket totals.
"""

from __future__ import annotations

import bisect
import decimal
import itertools
import math
import re

from resilience._sliding import SlidingCounters

__all__ = ["GROWTH", "LOW", "LatencyPercentile", "parse_percentile"]

LOW = 1e-4  # the upper edge of bucket 0, in seconds
GROWTH = 1.05  # each bucket's upper edge over the one before: at most 5 % too high
_BUCKETS = 1 + math.ceil(math.log(5000.0 / LOW) / math.log(GROWTH))  # up to ~1.4 h
_LOG_GROWTH = math.log(GROWTH)
_EDGES = tuple(LOW * GROWTH**index for index in range(_BUCKETS))
_PERCENTILE = re.compile(r"p(\d{1,2}(?:\.\d{1,3})?)")


def parse_percentile(spec: object, name: str) -> float:
    """``"p95"`` -> 0.95, ``"p99.9"`` -> 0.999; anything else is an error naming ``name``."""
    match = _PERCENTILE.fullmatch(spec) if isinstance(spec, str) else None
    if match is None or not 0.0 < float(match.group(1)) < 100.0:
        raise ValueError(
            f'{name} must be seconds or a percentile "pNN" in (p0, p100) such as "p95", '
            f"got {spec!r}"
        )
    return float(decimal.Decimal(match.group(1)) / 100)  # 99.9 / 100 == 0.999 exactly


def bucket(latency: float) -> int:
    """The index of the bucket ``latency`` (seconds) falls in."""
    if not latency > LOW:  # also NaN: a clock that stepped back says nothing
        return 0
    if latency >= _EDGES[-1]:  # also infinity, which has no logarithm to round
        return _BUCKETS - 1
    return math.ceil(math.log(latency / LOW) / _LOG_GROWTH - 1e-9)


class LatencyPercentile:
    """The ``quantile`` of the latencies added in the last ``window`` seconds."""

    __slots__ = ("_counters", "floor", "quantile", "warmup", "window")

    def __init__(
        self, quantile: float, *, window: float = 30.0, warmup: int = 20, floor: float = 0.0
    ) -> None:
        self.quantile = quantile
        self.window = window
        self.warmup = warmup
        self.floor = floor
        self._counters = SlidingCounters(window, fields=_BUCKETS)

    def add(self, latency: float, now: float) -> None:
        """Count one call of ``latency`` seconds that finished at ``now``."""
        self._counters.add(now, bucket(latency))

    def samples(self, now: float) -> int:
        """How many latencies the window holds at ``now``."""
        counters = self._counters
        counters.advance(now)
        return sum(counters.totals)

    def value(self, now: float) -> float | None:
        """The percentile at ``now`` (at least ``floor``), or ``None`` while warming up."""
        counters = self._counters
        counters.advance(now)
        running = list(itertools.accumulate(counters.totals))
        total = running[-1]
        if total < self.warmup or total == 0:
            return None
        rank = math.ceil(self.quantile * total - 1e-9)
        edge = _EDGES[bisect.bisect_left(running, max(1, rank))]
        return edge if edge > self.floor else self.floor
