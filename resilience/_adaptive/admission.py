"""Calls in flight against a moving limit, and the FIFO of calls waiting for a slot.

Rules:

- A call is admitted when fewer than ``limit`` calls are in flight and nobody waits ahead of it
  (newcomers never overtake the queue). Its permit is the number of calls in flight once it is
  admitted, itself included: what the algorithm wants to know about the sample later.
- Otherwise it waits in the FIFO when fewer than ``max_waiting`` wait, and is refused when not.
- A finished call is one sample: the algorithm moves the limit, and freed slots go to the
  oldest waiters (as many as the new limit allows). A call that ends without a sample
  (cancelled, or a failure that says nothing about load) only frees its slot.
- A waiter that gives up after it was granted a slot must pass it on (``release``).

Sans-IO and not thread-safe: the owner calls every method under its lock (each is O(1) bar
the hand-out, which is O(slots freed)) and wakes the returned waiters after releasing it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from resilience._adaptive.limits import LimitAlgorithm

__all__ = ["Admission", "Waiter"]


class Waiter:
    """A queued call: ``granted`` becomes its permit (> 0) when a slot is handed to it."""

    __slots__ = ("granted", "wake")

    def __init__(self, wake: Callable[[], object]) -> None:
        self.granted = 0
        self.wake = wake


class Admission:
    """In-flight calls under ``algorithm``'s limit, with up to ``max_waiting`` queued."""

    __slots__ = ("algorithm", "in_flight", "limit", "max_waiting", "rtt", "waiters")

    def __init__(self, algorithm: LimitAlgorithm, max_waiting: int) -> None:
        self.algorithm = algorithm
        self.limit = algorithm.limit
        self.max_waiting = max_waiting
        self.in_flight = 0
        self.rtt = 0.0  # an average of recent samples: about when a slot frees up
        self.waiters: deque[Waiter] = deque()

    def try_acquire(self) -> int:
        """A permit for a call starting now, or 0 when it would have to wait (or be refused)."""
        if self.waiters or self.in_flight >= self.limit:
            return 0
        self.in_flight = in_flight = self.in_flight + 1
        return in_flight

    def enqueue(self, waiter: Waiter) -> bool:
        """Queue ``waiter`` (``True``) or refuse it because the queue is full (``False``).

        Call after ``try_acquire`` failed, under a fresh hold of the lock: a slot freed in
        between is granted at once, so look at ``waiter.granted`` before waiting.
        """
        waiters = self.waiters
        if not waiters and self.in_flight < self.limit:
            self.in_flight = waiter.granted = self.in_flight + 1
            return True
        if len(waiters) >= self.max_waiting:
            return False
        waiters.append(waiter)
        return True

    def record(self, permit: int, rtt: float, dropped: bool, now: float) -> list[Waiter]:
        """A call that held ``permit`` finished as a sample; return the waiters to wake."""
        self.in_flight -= 1
        self.rtt += (rtt - self.rtt) * 0.1
        self.limit = self.algorithm.update(rtt, permit, dropped, now)
        return self._hand_out()

    def release(self) -> list[Waiter]:
        """A call finished without a sample (or a granted waiter gave up); wake the returned."""
        self.in_flight -= 1
        return self._hand_out()

    def abandon(self, waiter: Waiter) -> int:
        """``waiter`` stops waiting: its permit if one was handed to it meanwhile, else 0."""
        if waiter.granted:
            return waiter.granted
        self.waiters.remove(waiter)
        return 0

    def _hand_out(self) -> list[Waiter]:
        woken = []
        waiters = self.waiters
        while waiters and self.in_flight < self.limit:
            waiter = waiters.popleft()
            self.in_flight += 1
            waiter.granted = self.in_flight
            woken.append(waiter)
        return woken
