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
- ``ours+adaptive/all-5xx``: ``ours+adaptive`` with the breakers counting every 5xx, 503
  included: the HTTP transports' default ``breaker_statuses``, which the other ``ours``
  configurations leave out 503 from (``breaker_statuses=`` 5xx without 503, as a user can
  set it). It shows what the default does when a limiter below sheds load.

The gates run as the HTTP transports run them (``resilience/http/_origins.py``): inside Retry,
throttle -> limiter -> breaker -> bulkhead (``GATES``; a test fails if the transport's order
changes), each through the steps its shell calls, judging outcomes as the transport's copies
do: the throttle counts a 429/503 or a transport error (timeout, refused connection) as not
accepted; the limiter takes a 503 or a timeout as a drop, any other response (a 500 too) as a
plain sample, and a refused connection as no sample; the breaker counts transport errors and
5xx as failures, except 503 (above: as a transport with ``breaker_statuses`` = 5xx without
503; the transport's default counts 503 too). A local refusal is no outcome: the gates already
passed see the ``RejectedError`` come up from inside (the throttle withdraws the request, the
limiter releases its slot without a sample, the breaker its permit without recording), and
``Retry``'s core, with ``rejections="final"`` (its default), does not retry it: the hop
answers "overloaded" at once.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from benchmarks._fleet_sim import (
    ERROR,
    EXPIRED,
    OK,
    OVERLOADED,
    UNREACHABLE,
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
    RejectedError,
    RetryBudget,
    ThrottledError,
    VegasLimit,
)
from resilience._adaptive.limits import LimitAlgorithm, WindowedLimit
from resilience._retry.core import Attempts, RetryCore

__all__ = ["ATTEMPT_TIMEOUT", "CONFIGS", "GATES", "OPEN_FOR", "Config", "HopClient"]

ATTEMPT_TIMEOUT = 1.0  # every hop's per-attempt timeout, seconds
OPEN_FOR = 5.0  # our breakers' open period, seconds
TIMEOUT = "timeout"  # an attempt that ran out of time (a status only the caller sees)
_FAILURES = frozenset({ERROR, TIMEOUT, EXPIRED, UNREACHABLE})  # reported upwards as ERROR


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
    breaker_counts_sheds: bool = False  # whether a 503 fails the breaker (the transport's default)


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
        Config(
            "ours+adaptive/all-5xx",
            3,
            "ours",
            ours=True,
            limit="vegas",
            retry_sheds=False,
            breaker_counts_sheds=True,
        ),
    )
}


class _Failed(Exception):
    """An attempt's failure, as the exception ``Retry``'s core classifies."""


# What an attempt ends with, as the transport's policies see it. A status a server answers with
# is a response (OK 200, ERROR 500, OVERLOADED 503, EXPIRED 504: our deadline middleware's
# answer); an attempt that ran out of time, or whose connection was refused or reset, raised an
# httpx.TransportError instead (a timeout: an httpx.TimeoutException). These stand for them.
class _TransportError(Exception):
    """No response: ``httpx.TransportError``."""


class _TimedOut(_TransportError, TimeoutError):
    """The attempt's timeout ran out: ``httpx.TimeoutException``."""


class _Unreachable(_TransportError, ConnectionError):
    """The connection was refused or reset: ``httpx.ConnectError`` / ``ReadError``."""


_RAISED: dict[str, Exception] = {TIMEOUT: _TimedOut(), UNREACHABLE: _Unreachable()}

# The gates a transport puts around each attempt to one origin, outermost first (inside Retry
# and Hedge): resilience/http/_origins.py builds them in this order, and
# tests/test_adaptive_fleet.py fails if the two ever differ.
GATES: tuple[str, ...] = ("throttle", "limiter", "breaker", "bulkhead")


def _refused_for_load(status: object) -> bool:
    """``resilience.http._classify.refused_for_load`` for the simulated statuses: 429/503."""
    return status == OVERLOADED


def _breaker_failure(status: object) -> bool:
    """The breaker's ``on_result``: a 5xx but 503 (see the module's docstring)."""
    return status in (ERROR, EXPIRED)


def _any_5xx(status: object) -> bool:
    """The breaker's ``on_result`` under the transport's default ``breaker_statuses``."""
    return status in (ERROR, EXPIRED, OVERLOADED)


class _Call:
    __slots__ = ("attempts", "deadline", "done", "number")

    def __init__(self, deadline: float | None, done: Reply) -> None:
        self.deadline = deadline
        self.done = done
        self.number = 1
        self.attempts: Attempts | None = None


class _Attempt:
    __slots__ = (
        "breaker_permit",
        "call",
        "limit_permit",
        "over",
        "started",
        "throttled_at",
        "timer",
    )

    def __init__(self, call: _Call, started: float) -> None:
        self.call = call
        self.started = started
        self.over = False
        self.timer: object = None
        self.breaker_permit = -1
        self.limit_permit = 0
        self.throttled_at = 0.0


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
            self.breaker = CircuitBreaker(  # the transport's judgements (see the docstring)
                name,
                minimum_calls=20,
                window=10.0,
                open_for=OPEN_FOR,
                on=_TransportError,
                on_result=_any_5xx if config.breaker_counts_sheds else _breaker_failure,
                clock=clock,
            )
            self._core = RetryCore(
                name=name,
                attempts=config.attempts,
                retries_on=lambda exc: True,
                on_result=None,
                backoff=Backoff(rng=sim.child_rng(f"{name}/backoff")),
                budgeted=True,
                rejections="final",  # Retry's default: a local refusal is never retried
            )
        if config.limit is not None and to_leaf:
            algorithm: LimitAlgorithm = (
                WindowedLimit(VegasLimit(initial_limit=4, rng=sim.child_rng(f"{name}/vegas")))
                if config.limit == "vegas"
                else Gradient2Limit()
            )
            # on= and on_result= as the transport gives its copies (resilience/http/_origins.py)
            self.limiter = AdaptiveConcurrency(
                algorithm, name=name, on=TimeoutError, on_result=_refused_for_load, clock=clock
            )
            self.throttle = AdaptiveThrottle(
                name=name,
                on=_TransportError,
                on_result=_refused_for_load,
                clock=clock,
                rng=sim.child_rng(f"{name}/throttle"),
            )
        if config.fixed_limit is not None and to_leaf:
            self.bulkhead = Bulkhead(config.fixed_limit, name=name)
        self._gates = tuple(gate for gate in GATES if getattr(self, gate) is not None)

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
        if self._gates:
            refusal = self._admit(attempt)
            if refusal is not None:  # nothing was sent; Retry's core decides (rejections="final")
                self.refused += 1
                assert self._core is not None
                if call.attempts is None:
                    call.attempts = Attempts(self._core)
                left = None if deadline is None else deadline - now
                assert call.attempts.after_exception(refusal, left) is None
                call.done(OVERLOADED)
                return
        self.sent += 1
        attempt.timer = sim.at(timeout, self._settle, attempt, TIMEOUT)
        target = self.target
        sim.at(target.delay, target.receive, deadline, functools.partial(self._settle, attempt))

    # -- the gates, through the steps their shells call --------------------------------------------

    def _admit(self, attempt: _Attempt) -> RejectedError | None:
        """Pass the gates outermost first (``GATES``); on a refusal, the gates already passed
        see the ``RejectedError`` come up from inside, as in a ``Pipeline``: no outcome for any
        of them (the throttle withdraws, the limiter releases without a sample, the breaker
        releases without recording). Returns the refusal, or ``None`` when all admitted."""
        gates = self._gates
        for passed, gate in enumerate(gates):
            refusal = self._enter(gate, attempt)
            if refusal is not None:
                for outer in reversed(gates[:passed]):
                    self._refused_inside(outer, attempt, refusal)
                return refusal
        return None

    def _enter(self, gate: str, attempt: _Attempt) -> RejectedError | None:
        if gate == "throttle":
            assert self.throttle is not None
            try:
                attempt.throttled_at = self.throttle._admit()
            except ThrottledError as exc:
                return exc
        elif gate == "limiter":
            assert self.limiter is not None
            attempt.limit_permit = self.limiter._try_acquire()
            if not attempt.limit_permit:  # no queue (max_waiting=0): the shell's wait refuses
                return self.limiter._rejected()
        elif gate == "breaker":
            assert self.breaker is not None
            permit = self.breaker._machine.closed_permit  # the shell's fast path when closed
            if permit is None:
                try:
                    permit = self.breaker._admit()
                except CircuitOpenError as exc:
                    return exc
            attempt.breaker_permit = permit
        else:
            assert self.bulkhead is not None
            if not self.bulkhead._try_acquire():  # no queue: the shell's wait refuses
                return self.bulkhead._rejected()
        return None

    def _refused_inside(self, gate: str, attempt: _Attempt, refusal: RejectedError) -> None:
        """What ``gate``'s shell does when a policy inside it raised ``refusal``."""
        if gate == "throttle":
            assert self.throttle is not None
            self.throttle._withdraw(attempt.throttled_at)
        elif gate == "limiter":
            assert self.limiter is not None
            self.limiter._failed(attempt.limit_permit, attempt.started, refusal)  # no sample
        elif gate == "breaker":
            assert self.breaker is not None
            self.breaker._release(attempt.breaker_permit)
        else:
            assert self.bulkhead is not None
            self.bulkhead._release()

    def _settle(self, attempt: _Attempt, status: str) -> None:
        if attempt.over:
            return  # the answer came after the attempt timed out: the caller has moved on
        attempt.over = True
        if status != TIMEOUT:
            attempt.timer.cancel()  # type: ignore[attr-defined]
        if self._gates:
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
        """Tell each gate, innermost first, what the attempt showed, through the step its shell
        runs on a result (a response) or an exception (a timeout, a refused connection)."""
        raised = _RAISED.get(status)
        for gate in reversed(self._gates):
            if gate == "bulkhead":
                assert self.bulkhead is not None
                self.bulkhead._release()
            elif gate == "breaker":
                breaker = self.breaker
                assert breaker is not None
                failed = (
                    breaker._result_failed(status)
                    if raised is None
                    else breaker._exception_failed(raised)
                )
                breaker._record(attempt.breaker_permit, failed, attempt.started)
            elif gate == "limiter":
                limiter = self.limiter
                assert limiter is not None
                if raised is None:
                    limiter._finished(attempt.limit_permit, attempt.started, status)
                else:
                    limiter._failed(attempt.limit_permit, attempt.started, raised)
            else:
                throttle = self.throttle
                assert throttle is not None
                if raised is None:
                    throttle._finished(status)
                else:
                    throttle._failed(raised)

    def _retry_delay(self, call: _Call, status: str) -> float | None:
        config = self.config
        if call.number >= config.attempts or (status == OVERLOADED and not config.retry_sheds):
            return None
        if config.wait == "none":
            return 0.0
        if config.wait == "tenacity":  # wait_exponential_jitter(initial=0.05, max=1, jitter=0.05)
            grown = min(1.0, 0.05 * 2.0 ** (call.number - 1))
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
