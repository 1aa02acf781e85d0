"""Outcome windows: how many calls, failures and slow calls the breaker has seen lately.

Two kinds, as in resilience4j: the last ``size`` calls (``CountWindow``) or the calls of the last
``seconds`` (``TimeWindow``). Both keep running totals, so recording is O(1). Not thread-safe by
themselves: the breaker's lock guards them.
"""

from __future__ import annotations

from typing import Protocol

from resilience._sliding import SlidingCounters

__all__ = ["CountWindow", "OutcomeWindow", "TimeWindow"]

_CALLS, _FAILURES, _SLOW = 0, 1, 2


class OutcomeWindow(Protocol):
    """Totals over the window as of the last ``record``/``refresh``."""

    calls: int
    failures: int
    slow: int

    def record(self, now: float, failed: bool, slow: bool) -> None: ...

    def refresh(self, now: float) -> None: ...

    def reset(self) -> None: ...


class CountWindow:
    """The outcomes of the last ``size`` calls, in a ring buffer."""

    __slots__ = ("_next", "_ring", "calls", "failures", "size", "slow")

    def __init__(self, size: int) -> None:
        self.size = size
        self._ring = bytearray(size)  # bit 0: failed, bit 1: slow, bit 2: occupied
        self._next = 0
        self.calls = self.failures = self.slow = 0

    def record(self, now: float, failed: bool, slow: bool) -> None:
        position = self._next
        evicted = self._ring[position]
        if evicted:
            self.calls -= 1
            self.failures -= evicted & 1
            self.slow -= (evicted >> 1) & 1
        self._ring[position] = 4 | failed | (slow << 1)
        self.calls += 1
        self.failures += failed
        self.slow += slow
        self._next = position + 1 if position + 1 < self.size else 0

    def refresh(self, now: float) -> None:
        """Nothing ages out of a count window."""

    def reset(self) -> None:
        self._ring = bytearray(self.size)
        self._next = 0
        self.calls = self.failures = self.slow = 0


class TimeWindow:
    """The outcomes of the last ``seconds``, in ``slices`` slices (see ``SlidingCounters``)."""

    __slots__ = ("_counters", "calls", "failures", "seconds", "slow")

    def __init__(self, seconds: float, slices: int = 10) -> None:
        self.seconds = seconds
        self._counters = SlidingCounters(seconds, fields=3, slices=slices)
        self.calls = self.failures = self.slow = 0

    def record(self, now: float, failed: bool, slow: bool) -> None:
        counters = self._counters
        index = counters.advance(now)
        slices, totals = counters.slices, counters.totals
        slices[_CALLS][index] += 1
        totals[_CALLS] += 1
        if failed:
            slices[_FAILURES][index] += 1
            totals[_FAILURES] += 1
        if slow:
            slices[_SLOW][index] += 1
            totals[_SLOW] += 1
        self.calls, self.failures, self.slow = totals

    def refresh(self, now: float) -> None:
        self._counters.advance(now)
        self.calls, self.failures, self.slow = self._counters.totals

    def reset(self) -> None:
        self._counters.reset()
        self.calls = self.failures = self.slow = 0
