"""FakeClock: time that moves only when told, so policies' waits pass instantly in tests."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
from collections.abc import Callable

from resilience._clock import async_library

__all__ = ["FakeClock"]


class _Timer:
    __slots__ = ("callback", "cancelled")

    def __init__(self, callback: Callable[[], object]) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """A ``Clock`` whose time starts at ``start`` and moves only by ``advance`` and ``sleep``.

    ``sleep(s)`` and ``await sleep_async(s)`` advance the time by ``s`` instead of waiting (the
    async one then yields to the event loop once, asyncio's or trio's, so the sleeping task can
    be cancelled there).
    Timers from ``call_later`` (used by async ``Timeout``/``Deadline``, by ``Hedge``, and by the
    queue waits of ``Bulkhead`` and ``AdaptiveConcurrency``) fire, in order, on the thread that
    advances the time past them; ``pending_timers`` says when the live ones fall due. ``sleeps``
    lists every sleep asked for. Thread-safe.

    >>> clock = FakeClock()
    >>> clock.sleep(2.5); clock.now()
    2.5
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._lock = threading.RLock()
        self._timers: list[tuple[float, int, _Timer]] = []
        self._order = itertools.count()
        self.sleeps: list[float] = []

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now!r})"

    def now(self) -> float:
        """The current fake time, in seconds."""
        return self._now

    @property
    def pending_timers(self) -> list[float]:
        """When each timer from ``call_later`` that has neither fired nor been cancelled falls
        due, soonest first (a test's check that a policy called off what it scheduled)."""
        with self._lock:
            return sorted(when for when, _, timer in self._timers if not timer.cancelled)

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, firing the timers that fall due on the way."""
        if seconds < 0:
            raise ValueError(f"seconds must be >= 0, got {seconds!r}")
        with self._lock:
            target = self._now + seconds
            while self._timers and self._timers[0][0] <= target:
                when, _, timer = heapq.heappop(self._timers)
                self._now = max(self._now, when)
                if not timer.cancelled:
                    timer.callback()
            # A timer's callback may itself have advanced past ``target``: never go back.
            self._now = max(self._now, target)

    def sleep(self, seconds: float) -> None:
        """Record the sleep and advance by ``seconds`` at once."""
        self.sleeps.append(seconds)
        self.advance(max(0.0, seconds))

    async def sleep_async(self, seconds: float) -> None:
        """Record the sleep, advance by ``seconds``, then yield to the loop once."""
        self.sleeps.append(seconds)
        self.advance(max(0.0, seconds))
        if async_library() == "asyncio":
            await asyncio.sleep(0)
        else:
            import trio

            await trio.lowlevel.checkpoint()

    def call_later(self, seconds: float, callback: Callable[[], object]) -> _Timer:
        """Run ``callback`` when the time has advanced ``seconds`` past now."""
        timer = _Timer(callback)
        with self._lock:
            heapq.heappush(self._timers, (self._now + seconds, next(self._order), timer))
        return timer
