"""MemoryStore: the embedded default; state in a dict, each step atomic under one lock."""

from __future__ import annotations

import threading

from resilience._clock import SYSTEM_CLOCK, Clock
from resilience._gcra import GcraParams, RateLimitDecision, gcra_admit, gcra_step

__all__ = ["MemoryStore"]


class MemoryStore:
    """In-process state for rate limiters; thread-safe and asyncio-safe (O(1) under a lock).

    Keys are dropped once their state has fully decayed, so the dict holds only the limits
    that are currently constrained.
    """

    def __init__(self, *, clock: Clock | None = None) -> None:
        self._clock = clock or SYSTEM_CLOCK
        self._tats: dict[str, float] = {}
        self._lock = threading.Lock()

    def gcra(self, key: str, params: GcraParams, cost: int, max_wait: float) -> RateLimitDecision:
        """Run one GCRA step for ``key`` atomically, on this store's clock."""
        with self._lock:
            now = self._clock.now()
            decision, new_tat = gcra_step(params, self._tats.get(key), now, cost, max_wait)
            if new_tat is not None:
                self._tats[key] = new_tat
            if len(self._tats) > 1024:  # forget limits that have fully decayed
                self._tats = {k: t for k, t in self._tats.items() if t > now}
        return decision

    def gcra_admit(self, key: str, params: GcraParams, cost: int, max_wait: float) -> float:
        """The decorator's fast path: the wait (>= 0) if admitted, else -retry_after."""
        with self._lock:
            now = self._clock.now()
            new_tat, delay = gcra_admit(
                params.emission, params.tolerance, self._tats.get(key), now, cost, max_wait
            )
            if new_tat is None:
                return -delay
            self._tats[key] = new_tat
        return delay

    async def gcra_admit_async(
        self, key: str, params: GcraParams, cost: int, max_wait: float
    ) -> float:
        """``gcra_admit`` for coroutines (memory never blocks)."""
        return self.gcra_admit(key, params, cost, max_wait)

    async def gcra_async(
        self, key: str, params: GcraParams, cost: int, max_wait: float
    ) -> RateLimitDecision:
        """``gcra`` for coroutines (memory never blocks)."""
        return self.gcra(key, params, cost, max_wait)
