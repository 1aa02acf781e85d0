"""RetryBudget: a cap on retries relative to first attempts, shared by many Retry policies."""

from __future__ import annotations

import math
import threading
from typing import Any

from resilience._clock import SYSTEM_CLOCK, Clock
from resilience._sliding import SlidingCounters
from resilience._validate import check_duration, check_name, check_ratio
from resilience.stores._memory import MemoryStore
from resilience.stores._protocols import ScriptStore, check_script_store

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

    ``store``: ``None`` or a ``MemoryStore`` keeps the counters in this process. A
    ``RedisStore`` (or any ``ScriptStore``) shares them with every replica using the same
    ``name`` (then required; unshared, it defaults to "retry_budget"), one round trip per
    first attempt and per retry, on Redis's clock (``now`` arguments are then ignored). Over a
    ``redis.asyncio`` client (``is_async``) it serves coroutines only, through the ``*_async``
    methods (``Retry`` on a coroutine function uses them). While Redis is unavailable, the
    store's ``on_error="allow"`` lets every retry through and "deny" refuses them.
    """

    __slots__ = (
        "_args",
        "_clock",
        "_counters",
        "_keys",
        "_lock",
        "_reserve",
        "_script",
        "_scripts",
        "_store",
        "is_async",
        "min_retries_per_second",
        "name",
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
        name: str | None = None,
        store: MemoryStore | ScriptStore | None = None,
    ) -> None:
        # The store first: something that is no store is refused as such, named or not.
        scripts = None if store is None or isinstance(store, MemoryStore) else store
        if scripts is not None:
            scripts = check_script_store(scripts)
        name = check_name(name, "retry_budget", shared=scripts is not None)
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
        self.name = name
        self._store = store
        self._scripts = scripts
        self._script: Any = None
        self.is_async = False  # True on a redis.asyncio store: use the *_async methods
        if scripts is not None:
            self._share(scripts)

    def _share(self, store: ScriptStore) -> None:
        """Keep the counters in Redis under ``prefix{name}:budget`` (with a TTL)."""
        self.is_async = store.is_async
        self._script = store.script("budget")
        # Key and arguments encoded once: redis-py passes bytes through (see stores/_scripts).
        self._keys = [store.key(self.name, "budget").encode()]
        ttl = math.ceil(self.window * 1100.0) + 60_000  # the window, its last slice, a margin
        window, ratio, reserve = self.window * 1000.0, self.ratio, self._reserve
        parts = (repr(window), "10", repr(ratio), repr(reserve), str(ttl))
        self._args = [part.encode() for part in parts]

    @property
    def clock(self) -> Clock:
        return self._clock

    def __repr__(self) -> str:
        return (
            f"RetryBudget(ratio={self.ratio!r}, "
            f"min_retries_per_second={self.min_retries_per_second!r}, window={self.window!r}, "
            f"name={self.name!r})"
        )

    def replace(self, **changes: Any) -> RetryBudget:
        """A new budget with this one's settings bar ``changes`` (any constructor keyword) and
        counters of its own (the HTTP transports keep one per origin).

        On a ``RedisStore`` a copy under the same ``name`` shares the original's counters.
        """
        settings: dict[str, Any] = {
            "ratio": self.ratio,
            "min_retries_per_second": self.min_retries_per_second,
            "window": self.window,
            "clock": self._clock,
            "name": self.name,
            "store": self._store,
        }
        return RetryBudget(**{**settings, **changes})

    def _run(self, op: bytes) -> tuple[bool, int] | None:
        """One script step on Redis: (spent, allowance), or None while Redis is unavailable."""
        if self.is_async:
            raise TypeError(
                f"retry budget {self.name!r} is shared through a redis.asyncio client: use it "
                "from coroutines (record_attempt_async, try_spend_async, available_async)"
            )
        assert self._scripts is not None  # only a shared budget runs steps
        reply = self._scripts.run(
            self._script, self._keys, [op, b"", *self._args], "retry budget", self.name
        )
        return _step(reply)

    async def _run_async(self, op: bytes) -> tuple[bool, int] | None:
        assert self._scripts is not None  # only a shared budget runs steps
        reply = await self._scripts.run_async(
            self._script, self._keys, [op, b"", *self._args], "retry budget", self.name
        )
        return _step(reply)

    def record_attempt(self, now: float | None = None) -> None:
        """Count a first attempt, which earns ``ratio`` retries for the next ``window``."""
        if self._script is not None:
            self._run(b"a")
            return
        if now is None:
            now = self._clock.now()
        with self._lock:
            self._counters.add(now, _FIRST_ATTEMPTS)

    def try_spend(self, now: float | None = None) -> bool:
        """Take one retry from the budget; ``False`` (and nothing taken) when it is spent."""
        if self._script is not None:
            step = self._run(b"s")
            return self._outage_allows() if step is None else step[0]
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

    async def record_attempt_async(self) -> None:
        """``record_attempt`` for coroutines (a budget on ``redis.asyncio`` needs it)."""
        if self._script is not None and self.is_async:
            await self._run_async(b"a")
        else:
            self.record_attempt()

    async def try_spend_async(self) -> bool:
        """``try_spend`` for coroutines (a budget on ``redis.asyncio`` needs it)."""
        if self._script is not None and self.is_async:
            step = await self._run_async(b"s")
            return self._outage_allows() if step is None else step[0]
        return self.try_spend()

    async def available_async(self) -> int:
        """``available`` for coroutines (a budget on ``redis.asyncio`` needs it)."""
        if self._script is not None and self.is_async:
            return self._available(await self._run_async(b"v"))
        return self.available()

    def _outage_allows(self) -> bool:
        """What the shared store's ``on_error`` says while Redis is unavailable."""
        return self._scripts is not None and self._scripts.on_error == "allow"

    def _available(self, step: tuple[bool, int] | None) -> int:
        if step is None:
            return math.floor(self._reserve) if self._outage_allows() else 0
        return max(0, step[1])

    def available(self, now: float | None = None) -> int:
        """How many retries the budget would allow right now (while Redis is unavailable: the
        floor ``min_retries_per_second * window`` with "allow", 0 with "deny")."""
        if self._script is not None:
            return self._available(self._run(b"v"))
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


def _step(reply: Any) -> tuple[bool, int] | None:
    if reply is None:
        return None
    spent, allowance = reply.split()
    return spent in (b"1", "1"), int(allowance)
