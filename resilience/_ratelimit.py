"""RateLimiter: the policy over the GCRA core (``resilience._gcra``) and a store.

The store runs each GCRA step atomically; the shells only sleep (within ``max_wait``) and raise
``RateLimitedError``.
"""

from __future__ import annotations

import itertools
import math
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, NoReturn, TypeVar

from resilience import _events
from resilience._clock import SYSTEM_CLOCK, Clock
from resilience._context import remaining
from resilience._errors import RateLimitedError
from resilience._gcra import GcraParams, RateLimitDecision
from resilience._policy import Policy
from resilience._validate import check_duration, check_name, refuse_unknown
from resilience.stores._memory import MemoryStore
from resilience.stores._protocols import AsyncGcraStore, GcraStore

__all__ = ["RateLimiter", "RateLimiterCounts", "limiters"]

T = TypeVar("T")

# Joins a limiter's name and a partition in a store key; limiter names may not contain it.
_SEPARATOR = "\x00"


class RateLimiterCounts(NamedTuple):
    """Decisions since construction: admitted at once, admitted after a wait, refused."""

    allowed: int
    waited: int
    rejected: int


# Every live limiter, so telemetry can read their counts without a per-call event.
limiters: weakref.WeakSet[RateLimiter] = weakref.WeakSet()


def _value(counter: itertools.count[int]) -> int:
    """The next value an ``itertools.count`` would give, i.e. how many it has given."""
    # repr is "count(N)": __reduce__ said the same, but is deprecated in 3.13, gone in 3.14.
    return int(repr(counter)[6:-1])


class RateLimiter(Policy):
    """Admit ``rate`` calls per ``per`` seconds, smoothly, with ``burst`` extra at once (GCRA).

    ``burst`` defaults to one period's worth: ``RateLimiter(100)`` admits 100 calls at once
    (what "100 per second" means), then one every 10 ms as the quota refills; ``burst=0`` is
    the strictly smooth limiter (no two calls closer than ``per / rate``). Over the limit, a
    call waits up to ``max_wait`` seconds for its slot (and never past the current deadline),
    otherwise raises ``RateLimitedError`` with ``retry_after``. ``acquire(cost)`` (which may
    wait) and ``try_acquire(cost)`` (which never does) return a ``RateLimitDecision``.
    ``store`` keeps the state: in memory by default, shared by all replicas with
    ``RedisStore``. ``name`` names the limit in the store and in telemetry (events, metrics,
    logs; required with a ``RedisStore``; default "rate_limiter"); partitions never reach
    telemetry. Thread-safe and asyncio-safe.
    """

    __slots__ = (
        "__weakref__",
        "_allowed",
        "_bucket",
        "_clock",
        "_params",
        "_refusals",
        "_rejected",
        "_settings",
        "_steps",
        "_store",
        "_waited",
        "burst",
        "max_wait",
        "name",
        "per",
        "rate",
    )

    def __init__(
        self,
        rate: float,
        per: float = 1.0,
        *,
        burst: int | None = None,
        max_wait: float = 0.0,
        name: str | None = None,
        store: GcraStore | AsyncGcraStore | None = None,
        clock: Clock | None = None,
        **renamed: NoReturn,
    ) -> None:
        refuse_unknown("RateLimiter", renamed, {"key": "name"})
        # The store first: something that is no store is refused as such, named or not.
        if store is not None and not isinstance(store, (GcraStore, AsyncGcraStore)):
            raise TypeError(
                "store must offer gcra and gcra_admit or their async twins (a MemoryStore, a "
                f"RedisStore or a GcraStore), got {store!r}"
            )
        name = check_name(
            name, "rate_limiter", shared=store is not None and not isinstance(store, MemoryStore)
        )
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0:
            raise ValueError(f"rate must be a number > 0, got {rate!r}")
        if math.isinf(rate):
            raise ValueError(f"rate must be finite, got {rate!r}")
        check_duration(per, "per", allow_zero=False)
        if burst is not None and (isinstance(burst, bool) or not isinstance(burst, int)):
            raise TypeError(f"burst must be an int or None, got {burst!r}")
        if burst is not None and burst < 0:
            raise ValueError(f"burst must be >= 0, got {burst!r}")
        check_duration(max_wait, "max_wait")
        if _SEPARATOR in name:
            raise ValueError(f"name must not contain NUL, got {name!r}")
        self.rate = float(rate)
        self.per = float(per)
        # One period's worth at once: burst + 1 = rate (at least one call, never more than rate).
        self.burst = burst if burst is not None else max(0, math.floor(self.rate + 1e-9) - 1)
        self.max_wait = float(max_wait)
        self.name = name
        # As given: a copy with another rate and no burst of its own gets that rate's default.
        self._settings: dict[str, Any] = {
            "rate": rate,
            "per": per,
            "burst": burst,
            "max_wait": max_wait,
            "name": name,
            "store": store,
            "clock": clock,
        }
        self._bucket = name  # the store key of the unpartitioned limit
        self._clock = clock or SYSTEM_CLOCK
        emission = self.per / self.rate
        self._params = GcraParams(emission, emission * (self.burst + 1), self.burst + 1, name)
        self._store = store if store is not None else MemoryStore(clock=self._clock)
        self._steps, self._refusals = _steps(self._store, name)
        # itertools.count: next() is atomic, so threads never lose a count (an int += could)
        self._allowed = itertools.count()
        self._waited = itertools.count()
        self._rejected = itertools.count()
        limiters.add(self)

    def __repr__(self) -> str:
        return (
            f"RateLimiter({self.rate!r}, per={self.per!r}, burst={self.burst!r}, "
            f"name={self.name!r})"
        )

    def replace(self, **changes: Any) -> RateLimiter:
        """A new limiter with these settings bar ``changes`` (any constructor keyword).

        ``burst`` stays as given: one left to its default follows a changed ``rate``. Without a
        ``store`` the copy keeps its own buckets; on the same store under the same ``name`` it
        shares the original's (as replicas on one ``RedisStore`` do).
        """
        return RateLimiter(**{**self._settings, **changes})

    @property
    def counts(self) -> RateLimiterCounts:
        """How many decisions this limiter made, by outcome (for metrics)."""
        return RateLimiterCounts(
            _value(self._allowed), _value(self._waited), _value(self._rejected)
        )

    def _check_cost(self, cost: int) -> None:
        if isinstance(cost, bool) or not isinstance(cost, int) or cost < 0:
            raise ValueError(f"cost must be an int >= 0, got {cost!r}")
        if cost > self._params.limit:
            raise ValueError(
                f"cost must be <= burst + 1 ({self._params.limit}), got {cost!r}: "
                "it could never be admitted"
            )

    def try_acquire(self, cost: int = 1, *, partition: str | None = None) -> RateLimitDecision:
        """Take ``cost`` units now if the limit allows; never waits.

        ``partition`` splits the limit: each partition (a client id, an API key) gets its own
        ``rate`` and ``burst`` under ``name:partition`` — what a server limiting per caller uses.
        """
        self._check_cost(cost)
        return self._decide(self._key_of(partition), cost, 0.0)

    async def try_acquire_async(
        self, cost: int = 1, *, partition: str | None = None
    ) -> RateLimitDecision:
        """``try_acquire`` for coroutines (a ``RedisStore`` over ``redis.asyncio`` needs it)."""
        self._check_cost(cost)
        return await self._decide_async(self._key_of(partition), cost, 0.0)

    def acquire(self, cost: int = 1, *, partition: str | None = None) -> RateLimitDecision:
        """Take ``cost`` units, waiting up to ``max_wait`` on the clock for them."""
        self._check_cost(cost)
        decision = self._decide(self._key_of(partition), cost, self._wait_budget())
        if decision.wait > 0.0:
            self._clock.sleep(decision.wait)
        return decision

    async def acquire_async(
        self, cost: int = 1, *, partition: str | None = None
    ) -> RateLimitDecision:
        """``acquire`` for coroutines: waits with the clock's async sleep."""
        self._check_cost(cost)
        decision = await self._decide_async(self._key_of(partition), cost, self._wait_budget())
        if decision.wait > 0.0:
            await self._clock.sleep_async(decision.wait)
        return decision

    def _key_of(self, partition: str | None) -> str:
        """The store key of ``partition``'s bucket: ``name NUL partition``. Names hold no NUL,
        so the first NUL splits the two and no (name, partition) pair names another's bucket
        (``f"{name}:{partition}"`` let limiter "a" with partition "b:c" share limiter "a:b"'s
        bucket "c")."""
        if partition is None:
            return self._bucket
        if not isinstance(partition, str) or not partition:
            raise ValueError(f"partition must be a non-empty string or None, got {partition!r}")
        return self._bucket + _SEPARATOR + partition

    def _wait_budget(self) -> float:
        left = remaining()
        return self.max_wait if left is None or left > self.max_wait else left

    def _decide(self, key: str, cost: int, max_wait: float) -> RateLimitDecision:
        decision = self._steps.gcra(key, self._params, cost, max_wait)
        self._announce(decision)
        return decision

    async def _decide_async(self, key: str, cost: int, max_wait: float) -> RateLimitDecision:
        decision = await self._steps.gcra_async(key, self._params, cost, max_wait)
        self._announce(decision)
        return decision

    def _announce(self, decision: RateLimitDecision) -> None:
        if decision.allowed:
            next(self._waited if decision.wait > 0.0 else self._allowed)
            return
        next(self._rejected)
        if _events.listeners:
            _events.emit(_events.RateLimited(self.name, decision.retry_after))

    def _refused(self, retry_after: float) -> RateLimitedError:
        next(self._rejected)
        if _events.listeners:
            _events.emit(_events.RateLimited(self.name, retry_after))
        return RateLimitedError(self.name, retry_after)

    def _wrap_sync(self, fn: Callable[..., T]) -> Callable[..., T]:
        if self._refusals[0]:
            raise TypeError(self._refusals[0])
        admit, key, params = self._steps.gcra_admit, self._bucket, self._params
        budget, refused, sleep = self._wait_budget, self._refused, self._clock.sleep
        allowed, waited = self._allowed.__next__, self._waited.__next__
        may_wait = self.max_wait > 0.0  # without waiting, the deadline cannot matter

        def limited(*args: Any, **kwargs: Any) -> T:
            wait = admit(key, params, 1, budget() if may_wait else 0.0)
            if wait == 0.0:
                allowed()
            else:
                if wait < 0.0:
                    raise refused(-wait)
                waited()
                sleep(wait)
            return fn(*args, **kwargs)

        return limited

    def _wrap_async(self, fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        if self._refusals[1]:
            raise TypeError(self._refusals[1])
        admit, key, params = self._steps.gcra_admit_async, self._bucket, self._params
        budget, refused, sleep = self._wait_budget, self._refused, self._clock.sleep_async
        allowed, waited = self._allowed.__next__, self._waited.__next__
        may_wait = self.max_wait > 0.0

        async def limited(*args: Any, **kwargs: Any) -> T:
            wait = await admit(key, params, 1, budget() if may_wait else 0.0)
            if wait == 0.0:
                allowed()
            else:
                if wait < 0.0:
                    raise refused(-wait)
                waited()
                await sleep(wait)
            return await fn(*args, **kwargs)

        return limited


class _Steps(NamedTuple):
    """The store's four GCRA steps, bound once; a step the store cannot serve raises the
    ``TypeError`` that says why (naming ``store``), not an ``AttributeError``."""

    gcra: Callable[[str, GcraParams, int, float], RateLimitDecision]
    gcra_admit: Callable[[str, GcraParams, int, float], float]
    gcra_async: Callable[[str, GcraParams, int, float], Awaitable[RateLimitDecision]]
    gcra_admit_async: Callable[[str, GcraParams, int, float], Awaitable[float]]


def _steps(store: GcraStore | AsyncGcraStore, name: str) -> tuple[_Steps, tuple[str, str]]:
    """Bind ``store``'s steps for limiter ``name``; the refusals of sync and of async use
    ("" where the store serves that colour).

    A store serves sync code when it offers ``gcra``/``gcra_admit`` and coroutines when it
    offers the ``*_async`` twins, unless its ``is_async`` says otherwise (a ``RedisStore``
    over ``redis.Redis`` has async steps that would block the loop and then fail, one over
    ``redis.asyncio`` sync steps that answer coroutines).
    """
    is_async = getattr(store, "is_async", None)
    sync = store if isinstance(store, GcraStore) and is_async is not True else None
    coroutines = store if isinstance(store, AsyncGcraStore) and is_async is not False else None
    head = f"store: rate limiter {name!r} cannot serve"
    no_sync = no_async = ""
    if is_async is True:
        no_sync = f"{head} sync code: its store wraps a redis.asyncio client; give it a redis.Redis"
    elif sync is None:
        no_sync = f"{head} sync code: its store offers no gcra and gcra_admit"
    if is_async is False:
        no_async = f"{head} coroutines: its store wraps a sync client; give it a redis.asyncio one"
    elif coroutines is None:
        no_async = f"{head} coroutines: its store offers no gcra_async and gcra_admit_async"

    def refuse(message: str) -> Callable[..., NoReturn]:
        def refused(*args: object) -> NoReturn:
            raise TypeError(message)

        return refused

    steps = _Steps(
        sync.gcra if sync is not None else refuse(no_sync),
        sync.gcra_admit if sync is not None else refuse(no_sync),
        coroutines.gcra_async if coroutines is not None else refuse(no_async),
        coroutines.gcra_admit_async if coroutines is not None else refuse(no_async),
    )
    return steps, (no_sync, no_async)
