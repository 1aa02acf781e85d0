"""The client configurations the fleet compares, one ``HopClient`` per hop.

Every configuration times each attempt out after ``ATTEMPT_TIMEOUT`` (never past a propagated
deadline). What differs is what happens around the attempts:

- ``bare``: one attempt.
- ``naive``: 3 attempts, at once, on any failure.
- ``tenacity``: 3 attempts with tenacity's ``wait_exponential_jitter`` (scaled to this world).
- ``ours``: our real cores — ``Retry``'s decision core (3 attempts, ``Backoff()``) under a
  ``RetryBudget()``, a ``CircuitBreaker`` per hop, and the user's deadline propagated: attempt
  timeouts and backoffs stay inside it and servers drop requests whose deadline has passed.
  A breaker counts errors and timeouts as failures; a 503 that says "overloaded" is an answer
  (the breaker watches for a broken dependency; shedding load is the limiter's business, and a
  breaker that counted sheds would open whenever a limiter below it did its job).
- ``ours+adaptive``: ``ours`` plus an ``AdaptiveConcurrency`` (``VegasLimit``) and an
  ``AdaptiveThrottle`` on the hop to the leaf, and sheds are final: no hop retries a 503
  "overloaded" (the SRE book's "overloaded; don't retry"; ``Retry(on=...)`` without
  ``ConcurrencyLimitedError``, ``ThrottledError`` and 503), so a shed request costs one fast
  answer and no queueing.
- ``ours+gradient2``: the same with ``Gradient2Limit()`` (its defaults) as the algorithm.
- ``ours+fixed``: ``ours`` plus a fixed limit of 16 (a ``Bulkhead``) on the hop to the leaf.

Local refusals (breaker open, throttled, over a limit) are answered "overloaded" at once and
never retried by the same hop.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from benchmarks._fleet_sim import (
    ERROR,
    EXPIRED,
    OK,
    OVERLOADED,
    Reply,
    Sim,
    Target,
)
from resilience import (
    AdaptiveConcurrency,
    AdaptiveThrottle,
    Backoff,
    Bulkhead,
    CircuitBreaker,
    CircuitOpenError,
    Gradient2Limit,
    RetryBudget,
    ThrottledError,
    VegasLimit,
)
from resilience._adaptive.limits import LimitAlgorithm, WindowedLimit
from resilience._retry.core import Attempts, RetryCore

__all__ = ["ATTEMPT_TIMEOUT", "CONFIGS", "OPEN_FOR", "Config", "HopClient"]

ATTEMPT_TIMEOUT = 1.0  # every hop's per-attempt timeout, seconds
OPEN_FOR = 5.0  # our breakers' open period, seconds
TIMEOUT = "timeout"  # an attempt that ran out of time (a status only the caller sees)
_FAILURES = frozenset({ERROR, TIMEOUT, EXPIRED})  # what a breaker counts against the hop


@dataclass(frozen=True)
class Config:
    """One way of calling the next tier."""

    name: str
    attempts: int = 1
    wait: str = "none"  # none | tenacity | ours
    ours: bool = False  # budget + breaker + deadline propagation (with wait="ours")
    limit: str | None = None  # vegas | gradient2: AdaptiveConcurrency + AdaptiveThrottle
    fixed_limit: int | None = None  # a Bulkhead of this size to the leaf
    retry_sheds: bool = True  # whether a 503 "overloaded" is retried (within the budget)


CONFIGS = {
    config.name: config
    for config in (
        Config("bare"),
        Config("naive", 3),
        Config("tenacity", 3, "tenacity"),
        Config("ours", 3, "ours", ours=True),
        Config("ours+adaptive", 3, "ours", ours=True, limit="vegas", retry_sheds=False),
        Config("ours+gradient2", 3, "ours", ours=True, limit="gradient2", retry_sheds=False),
        Config("ours+fixed", 3, "ours", ours=True, fixed_limit=16),
    )
}


class _Failed(Exception):
    """An attempt's failure, as the exception ``Retry``'s core classifies."""


class _Call:
    __slots__ = ("attempts", "deadline", "done", "number")

    def __init__(self, deadline: float | None, done: Reply) -> None:
        self.deadline = deadline
        self.done = done
        self.number = 1
        self.attempts: Attempts | None = None


class _Attempt:
    __slots__ = ("breaker_permit", "call", "limit_permit", "over", "started", "timer")

    def __init__(self, call: _Call, started: float) -> None:
        self.call = call
        self.started = started
        self.over = False
        self.timer: object = None
        self.breaker_permit = -1
        self.limit_permit = 0


class HopClient:
    """How one tier calls the next (``target``) under ``config``; counts what it sends."""

    def __init__(self, sim: Sim, target: Target, config: Config, name: str, to_leaf: bool) -> None:
        self.sim = sim
        self.target = target
        self.config = config
        self.name = name
        self.sent = 0  # attempts that went on the wire
        self.refused = 0  # attempts refused locally
        self._wait_rng = sim.child_rng(f"{name}/wait")
        self.budget: RetryBudget | None = None
        self.breaker: CircuitBreaker | None = None
        self.throttle: AdaptiveThrottle | None = None
        self.limiter: AdaptiveConcurrency | None = None
        self.bulkhead: Bulkhead | None = None
        self._core: RetryCore | None = None
        clock = sim.clock
        if config.ours:
            self.budget = RetryBudget(clock=clock, name=name)
            self.breaker = CircuitBreaker(
                name,
                minimum_calls=20,
                window=10.0,
                open_for=OPEN_FOR,
                clock=clock,
            )
            self._core = RetryCore(
                name=name,
                attempts=config.attempts,
                retries_on=lambda exc: True,
                on_result=None,
                backoff=Backoff(rng=sim.child_rng(f"{name}/backoff")),
                budgeted=True,
            )
        if config.limit is not None and to_leaf:
            algorithm: LimitAlgorithm = (
                WindowedLimit(VegasLimit(initial_limit=4, rng=sim.child_rng(f"{name}/vegas")))
                if config.limit == "vegas"
                else Gradient2Limit()
            )
            self.limiter = AdaptiveConcurrency(algorithm, name=name, clock=clock)
            self.throttle = AdaptiveThrottle(
                name=name, clock=clock, rng=sim.child_rng(f"{name}/throttle")
            )
        if config.fixed_limit is not None and to_leaf:
            self.bulkhead = Bulkhead(config.fixed_limit, name=name)

    # -- one call: attempts until success, give-up or refusal ------------------------------------

    def call(self, deadline: float | None, done: Reply) -> None:
        call = _Call(deadline, done)
        if self.budget is not None:
            self.budget.record_attempt()  # a first attempt earns retries, as Retry's shells do
        self._attempt(call)

    def _attempt(self, call: _Call) -> None:
        sim, now = self.sim, self.sim.now()
        deadline = call.deadline
        timeout = ATTEMPT_TIMEOUT if deadline is None else min(ATTEMPT_TIMEOUT, deadline - now)
        if timeout <= 0:
            call.done(EXPIRED)
            return
        attempt = _Attempt(call, now)
        if not self._admit(attempt):
            self.refused += 1
            call.done(OVERLOADED)
            return
        self.sent += 1
        attempt.timer = sim.at(timeout, self._settle, attempt, TIMEOUT)
        target = self.target
        sim.at(target.delay, target.receive, deadline, functools.partial(self._settle, attempt))

    def _admit(self, attempt: _Attempt) -> bool:
        """The local gates, outermost first; a refusal releases what the earlier ones gave."""
        if self.breaker is not None:
            try:
                attempt.breaker_permit = self.breaker._admit()
            except CircuitOpenError:
                return False
        if self.limiter is not None:
            attempt.limit_permit = self.limiter._try_acquire()
            if not attempt.limit_permit:
                self._release_breaker(attempt)
                return False
        if self.throttle is not None:
            try:
                self.throttle._admit()
            except ThrottledError:
                if self.limiter is not None:
                    self.limiter._release()
                self._release_breaker(attempt)
                return False
        if self.bulkhead is not None and not self.bulkhead._try_acquire():
            self._release_breaker(attempt)
            return False
        return True

    def _release_breaker(self, attempt: _Attempt) -> None:
        if self.breaker is not None:
            self.breaker._release(attempt.breaker_permit)

    def _settle(self, attempt: _Attempt, status: str) -> None:
        if attempt.over:
            return  # the answer came after the attempt timed out: the caller has moved on
        attempt.over = True
        if status != TIMEOUT:
            attempt.timer.cancel()  # type: ignore[attr-defined]
        self._record(attempt, status)
        call = attempt.call
        if status == OK:
            call.done(OK)
            return
        delay = self._retry_delay(call, status)
        if delay is None:
            call.done(ERROR if status in _FAILURES else status)
        else:
            call.number += 1
            self.sim.at(delay, self._attempt, call)

    def _record(self, attempt: _Attempt, status: str) -> None:
        """Tell each gate what the attempt showed (the steps the policies' shells run)."""
        if self.breaker is not None:
            self.breaker._record(attempt.breaker_permit, status in _FAILURES, attempt.started)
        if self.throttle is not None and status in (OK, ERROR):
            self.throttle._accepted()  # the server answered: it accepted the request
        if self.limiter is not None:
            if status == ERROR:
                self.limiter._release()  # a failure that says nothing about load
            else:
                self.limiter._sample(attempt.limit_permit, attempt.started, status != OK)
        if self.bulkhead is not None:
            self.bulkhead._release()

    def _retry_delay(self, call: _Call, status: str) -> float | None:
        config = self.config
        if call.number >= config.attempts or (status == OVERLOADED and not config.retry_sheds):
            return None
        if config.wait == "none":
            return 0.0
        if config.wait == "tenacity":  # wait_exponential_jitter(initial=0.05, max=1, jitter=0.05)
            grown = min(1.0, 0.05 * 2 ** (call.number - 1))
            return grown + self._wait_rng.uniform(0.0, 0.05)
        assert self._core is not None and self.budget is not None
        if call.attempts is None:
            call.attempts = Attempts(self._core)
        now, deadline = self.sim.now(), call.deadline
        delay = call.attempts.after_exception(
            _Failed(status), None if deadline is None else deadline - now
        )
        if delay is not None:  # a retry requested: the budget decides, as Retry's shells do
            delay = call.attempts.budget_answered(self.budget.try_spend())
        return delay
