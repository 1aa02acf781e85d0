"""RetryBudget: a cap on retries relative to first attempts, shared by many Retry policies."""

from __future__ import annotations

import math
import threading

from resilience._clock import SYSTEM_CLOCK, Clock
from resilience._sliding import SlidingCounters
from resilience._validate import check_duration, check_ratio

__all__ = ["RetryBudget"]

_FIRST_ATTEMPTS = 0
_RETRIES = 1


class RetryBudget:
    """Allow retries of at most ``ratio`` x first attempts plus a floor, over a sliding window.

    Over the last ``window`` seconds, retries may number at most
    ``ratio * first_attempts + min_retries_per_second * window`` (Finagle's and Envoy's retry
    budget). When it is spent, ``Retry`` does not retry: the original failure surfaces at once,
    so a struggling downstream sees at most about ``1 + ratio`` times its normal load instead of
    ``attempts`` times. First attempts are never refused, and each one refills the budget.

    Share one instance between every ``Retry`` that calls the same downstream. Thread-safe and
    asyncio-safe (the lock guards O(1) bookkeeping only). An entry leaves the window between
    ``window`` and ``1.1 * window`` seconds after it was counted.
    """

    __slots__ = (
        "_clock",
        "_counters",
        "_lock",
        "_reserve",
        "min_retries_per_second",
        "ratio",
        "window",
    )

    def __init__(
        self,
        ratio: float = 0.2,
        min_retries_per_second: float = 10.0,
        window: float = 10.0,
        *,
        clock: Clock | None = None,
    ) -> None:
        check_ratio(ratio, "ratio", allow_zero=True)
        check_duration(min_retries_per_second, "min_retries_per_second")
        check_duration(window, "window", allow_zero=False)
        self.ratio = float(ratio)
        self.min_retries_per_second = float(min_retries_per_second)
        self.window = float(window)
        self._clock = clock or SYSTEM_CLOCK
        self._reserve = self.min_retries_per_second * self.window
        self._counters = SlidingCounters(self.window, fields=2)
        self._lock = threading.Lock()

    @property
    def clock(self) -> Clock:
        return self._clock

    def __repr__(self) -> str:
        return (
            f"RetryBudget(ratio={self.ratio!r}, "
            f"min_retries_per_second={self.min_retries_per_second!r}, window={self.window!r})"
        )

    def _copy(self) -> RetryBudget:
        """A fresh budget with the same settings (the HTTP transports keep one per origin)."""
        return RetryBudget(self.ratio, self.min_retries_per_second, self.window, clock=self._clock)

    def record_attempt(self, now: float | None = None) -> None:
        """Count a first attempt, which earns ``ratio`` retries for the next ``window``."""
        if now is None:
            now = self._clock.now()
        with self._lock:
            self._counters.add(now, _FIRST_ATTEMPTS)

    def try_spend(self, now: float | None = None) -> bool:
        """Take one retry from the budget; ``False`` (and nothing taken) when it is spent."""
        if now is None:
            now = self._clock.now()
        with self._lock:
            counters = self._counters
            index = counters.advance(now)
            if self._allowance_locked() < 1:
                return False
            counters.slices[_RETRIES][index] += 1
            counters.totals[_RETRIES] += 1
            return True

    def available(self, now: float | None = None) -> int:
        """How many retries the budget would allow right now."""
        if now is None:
            now = self._clock.now()
        with self._lock:
            self._counters.advance(now)
            allowance = self._allowance_locked()
        return max(0, allowance)

    def _allowance_locked(self) -> int:
        """Whole retries earned in the window minus those spent (negative for a while at times)."""
        totals = self._counters.totals
        earned = self._reserve + self.ratio * totals[_FIRST_ATTEMPTS]
        # Float products land just below whole numbers (0.29 * 100 == 28.999999999999996):
        # round those up, so 100 first attempts at ratio 0.29 earn exactly 29 retries.
        return math.floor(earned * (1.0 + 1e-12) + 1e-9) - totals[_RETRIES]
