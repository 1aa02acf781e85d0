"""The SRE client-side throttle: refuse locally once the backend accepts too little.

Google SRE book, "Handling Overload": over the last ``window`` seconds the client counts
``requests`` (every call the application attempted, the ones refused here included) and
``accepts`` (calls the backend accepted). A new call is refused locally with probability

    p = max(0, (requests - k * accepts) / (requests + 1))

computed before the call itself is counted. A call that a policy *inside* the throttle refused
locally (a limiter, a breaker, a bulkhead: ``RejectedError``) never reached the backend: it is
withdrawn, neither a request nor an accept. While the backend accepts everything, ``p`` is 0;
when it accepts nothing, ``p`` approaches 1 but a trickle still goes through, which is how the
client sees it recover. ``k`` (>= 1, default 2) is how many requests per accept the client may
send: 2 wastes some backend work on rejections but notices recovery sooner; 1.1 is stricter.

Sans-IO: the caller passes ``now`` and a uniform ``draw`` in [0, 1) (its own seeded RNG) and
holds the owner's lock; every step is O(1) (``resilience._sliding``).
"""

from __future__ import annotations

import math

from resilience._sliding import SlidingCounters

__all__ = ["ThrottleCore", "check_k"]

_REQUESTS = 0
_ACCEPTS = 1


def check_k(k: float) -> None:
    """Reject a ``k`` that is not a finite number >= 1, naming the parameter."""
    if isinstance(k, bool) or not isinstance(k, (int, float)) or math.isnan(k):
        raise TypeError(f"k must be a number >= 1, got {k!r}")
    if not 1.0 <= k < math.inf:
        raise ValueError(f"k must be a finite number >= 1, got {k!r}")


class ThrottleCore:
    """Requests and accepts over a sliding window, and the refusal probability they imply."""

    __slots__ = ("_counters", "k")

    def __init__(self, k: float, window: float) -> None:
        self.k = float(k)
        self._counters = SlidingCounters(window, fields=2)

    def probability(self, now: float) -> float:
        """The probability that a call starting at ``now`` is refused."""
        counters = self._counters
        counters.advance(now)
        requests, accepts = counters.totals
        return max(0.0, (requests - self.k * accepts) / (requests + 1))

    def admit(self, now: float, draw: float) -> float:
        """Count a call at ``now``; return 0.0 when it may go, else the probability it met.

        ``draw`` is uniform in [0, 1): the call is refused when ``draw < p``.
        """
        p = self.probability(now)
        self._counters.add(now, _REQUESTS)
        return p if draw < p else 0.0

    def withdraw(self, admitted_at: float) -> None:
        """Un-count the request admitted at ``admitted_at``: a policy inside refused it locally
        (a ``RejectedError``), so it never reached the backend and says nothing about it.

        Taken from the slice the request went into (it may have been admitted in an earlier
        one, after a queue wait); nothing once that slice has left the window.
        """
        self._counters.take_back(admitted_at, _REQUESTS)

    def accepted(self, now: float) -> None:
        """The backend accepted a call (it answered, whatever the answer said)."""
        self._counters.add(now, _ACCEPTS)

    def counts(self, now: float) -> tuple[int, int]:
        """(requests, accepts) in the window at ``now``."""
        counters = self._counters
        counters.advance(now)
        requests, accepts = counters.totals
        return requests, accepts
