"""AdaptiveConcurrency: a concurrency limit that follows the dependency's measured latency.

The rules are in ``resilience._adaptive.limits`` (how a sample moves the limit) and
``resilience._adaptive.admission`` (who gets a slot, who waits); this module holds the lock,
times the calls, classifies their outcomes and waits. Call durations and queue waits run on
the injected clock (a queue wait's limit is ``_wake.TimeLimit``).
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from resilience import _events
from resilience._adaptive.admission import Admission, Waiter
from resilience._adaptive.limits import LimitAlgorithm, VegasLimit, WindowedLimit
from resilience._clock import SYSTEM_CLOCK, Clock, check_clock
from resilience._context import current_deadline
from resilience._errors import ConcurrencyLimitedError, RejectedError
from resilience._policy import Policy
from resilience._validate import ExceptionFilter, check_name, check_queue, exception_predicate
from resilience._wake import TimeLimit, async_wake

__all__ = ["AdaptiveConcurrency", "concurrency_limiters"]

T = TypeVar("T")
_log = logging.getLogger("resilience")

# Every live limiter, so telemetry can read limits, in-flight calls and rejections.
concurrency_limiters: weakref.WeakSet[AdaptiveConcurrency] = weakref.WeakSet()


class AdaptiveConcurrency(Policy):
    """Allow as many concurrent calls as the dependency absorbs without queueing; shed the rest.

    ``algorithm`` moves the limit as calls finish: it grows while latency holds and shrinks when
    latency climbs or calls are dropped. The default, ``WindowedLimit(VegasLimit())`` (Netflix's
    concurrency-limits), feeds Vegas one average per second and holds an estimated 3-6 calls
    queued at the dependency, which keeps a sustained overload's queueing short
    (``benchmarks/fleet.py``, ``benchmarks/overload.py``). Vegas learns the unloaded latency from
    the quietest second it sees: when the dependency may already be saturated at start-up, start
    low (``VegasLimit(initial_limit=4)``) so that it learns it before a queue forms.
    ``Gradient2Limit`` follows latency changes but lets a steady overload queue more;
    ``AimdLimit`` reacts to drops only. The policy owns the instance: do not share one.

    Over the limit, a call waits in a FIFO queue when fewer than ``max_waiting`` wait, for at
    most ``max_wait`` seconds on ``clock`` (``None``: no limit of its own) and never past the
    enclosing deadline, timed on that deadline's own clock; otherwise — or when the wait runs
    out — it raises ``ConcurrencyLimitedError``. With the defaults (``max_waiting=0``) excess
    calls are refused at once. ``clock`` (default: the system clock) times both the calls'
    latencies and the queue waits: on a ``FakeClock`` a queued call is refused when the clock is
    advanced past ``max_wait``, never before.

    What a call says about load: one that raised an ``on`` exception (default ``TimeoutError``,
    which ``DeadlineExceededError`` is) or returned a value matching ``on_result`` (e.g. a 503)
    was *dropped*; one that returned otherwise is a plain sample; any other
    exception, cancellation and ``BaseException`` are no sample at all — nor is a
    ``RejectedError`` from a policy inside (a breaker, a bulkhead: the call never left the
    process), whatever ``on`` says. The slot is released on
    every path. Thread-safe and asyncio-safe; the lock guards O(1) bookkeeping only.
    """

    __slots__ = (
        "__weakref__",
        "_admission",
        "_clock",
        "_drop_on",
        "_drop_on_result",
        "_lock",
        "_rejections",
        "_settings",
        "max_wait",
        "max_waiting",
        "name",
    )

    def __init__(
        self,
        algorithm: LimitAlgorithm | None = None,
        *,
        max_waiting: int = 0,
        max_wait: float | None = 0.0,
        on: ExceptionFilter = TimeoutError,
        on_result: Callable[[Any], bool] | None = None,
        name: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        if algorithm is None:
            algorithm = WindowedLimit(VegasLimit())
        elif not all(callable(getattr(algorithm, m, None)) for m in ("update", "replace")):
            raise TypeError(
                "algorithm must be a limit algorithm such as VegasLimit(), Gradient2Limit() or "
                f"AimdLimit(), got {algorithm!r}"
            )
        check_queue(max_waiting, max_wait)
        check_clock(clock)
        if on_result is not None and not callable(on_result):
            raise TypeError(f"on_result must be a predicate or None, got {on_result!r}")
        name = check_name(name, "adaptive_concurrency")
        self._settings: dict[str, Any] = {
            "algorithm": algorithm,
            "max_waiting": max_waiting,
            "max_wait": max_wait,
            "on": on,
            "on_result": on_result,
            "name": name,
            "clock": clock,
        }
        self._drop_on = exception_predicate(on, "on")
        self._drop_on_result = on_result
        self.max_waiting = max_waiting
        self.max_wait = max_wait
        self.name = name
        self._clock = clock or SYSTEM_CLOCK
        self._admission = Admission(algorithm, max_waiting)
        self._lock = threading.Lock()
        self._rejections = 0
        concurrency_limiters.add(self)

    def __repr__(self) -> str:
        return (
            f"AdaptiveConcurrency({self._admission.algorithm!r}, max_waiting={self.max_waiting!r}, "
            f"max_wait={self.max_wait!r}, name={self.name!r})"
        )

    def replace(self, **changes: Any) -> AdaptiveConcurrency:
        """A new limiter with these settings bar ``changes`` (any constructor keyword), and a
        fresh copy of the algorithm (the transports keep one limiter per origin)."""
        settings = {**self._settings, **changes}
        if "algorithm" not in changes:
            settings["algorithm"] = self._admission.algorithm.replace()
        return AdaptiveConcurrency(**settings)

    # -- observation ---------------------------------------------------------------------------

    @property
    def limit(self) -> int:
        """The current limit on concurrent calls."""
        return self._admission.limit

    @property
    def in_flight(self) -> int:
        """Calls holding a slot right now."""
        return self._admission.in_flight

    @property
    def waiting(self) -> int:
        """Calls queued for a slot right now."""
        return len(self._admission.waiters)

    @property
    def rejections(self) -> int:
        """Calls refused since construction (queue full, or the wait ran out)."""
        return self._rejections

    # -- steps the shells call -----------------------------------------------------------------

    def _try_acquire(self) -> int:
        with self._lock:
            return self._admission.try_acquire()

    def _enter_sync(self) -> int:
        """A permit, after a wait in the queue if need be, or ``ConcurrencyLimitedError``."""
        return self._try_acquire() or self._wait_sync()

    def _rejected(self) -> ConcurrencyLimitedError:
        admission = self._admission
        with self._lock:
            self._rejections += 1
            limit, in_flight, rtt = admission.limit, admission.in_flight, admission.rtt
        if _events.listeners:
            _events.emit(_events.ConcurrencyLimited(self.name, limit, in_flight))
        return ConcurrencyLimitedError(self.name, limit, in_flight, rtt)

    def _enqueue(self, waiter: Waiter) -> bool:
        with self._lock:
            return self._admission.enqueue(waiter)

    def _claim(self, waiter: Waiter) -> int:
        """The waiter stopped waiting: its permit, or 0 (it left the queue)."""
        with self._lock:
            return self._admission.abandon(waiter)

    def _give_up(self, waiter: Waiter) -> None:
        """A waiter was interrupted: leave the queue, passing on a slot handed to it."""
        with self._lock:
            woken = self._admission.release() if self._admission.abandon(waiter) else ()
        _wake(woken)

    def _release(self) -> None:
        with self._lock:
            woken = self._admission.release()
        _wake(woken)

    def _sample(self, permit: int, started: float, dropped: bool) -> None:
        now = self._clock.now()
        with self._lock:
            woken = self._admission.record(permit, now - started, dropped, now)
        _wake(woken)

    def _finished(self, permit: int, started: float, result: object) -> None:
        judge = self._drop_on_result
        self._sample(permit, started, judge is not None and self._judge(judge, result))

    def _failed(self, permit: int, started: float, exc: Exception) -> None:
        # A policy inside refused the call locally (RejectedError): the dependency never saw
        # it, so its duration says nothing about the dependency's latency. No sample.
        if not isinstance(exc, RejectedError) and self._judge(self._drop_on, exc):
            self._sample(permit, started, True)
        else:
            self._release()

    def _judge(self, predicate: Callable[[Any], bool], outcome: object) -> bool:
        """Apply a user predicate; one that raises counts a drop (never leaks the slot)."""
        try:
            return bool(predicate(outcome))
        except Exception:
            _log.exception("adaptive concurrency %r: a drop predicate raised", self.name)
            return True

    # -- shells --------------------------------------------------------------------------------

    @contextmanager
    def _queued(self, wake: Callable[[], object]) -> Iterator[Waiter]:
        """Queue a waiter woken by ``wake`` (granted at once when a slot is free), or raise
        ``ConcurrencyLimitedError`` when the queue is full. Interrupted, it leaves the queue and
        passes on a slot handed to it meanwhile."""
        waiter = Waiter(wake)
        if not self._enqueue(waiter):
            raise self._rejected()
        try:
            yield waiter
        except BaseException:
            self._give_up(waiter)
            raise

    def _claimed(self, waiter: Waiter) -> int:
        """The wait is over: the waiter's permit, or ``ConcurrencyLimitedError`` (it ran out)."""
        permit = self._claim(waiter)
        if not permit:
            raise self._rejected()
        return permit

    def _wait_sync(self) -> int:
        """The slow path: queue and wait for a slot, or raise ``ConcurrencyLimitedError``."""
        event = threading.Event()
        with self._queued(event.set) as waiter:
            if not waiter.granted:
                with TimeLimit(self._clock, self.max_wait, current_deadline(), event.set) as limit:
                    event.wait(limit)
        return self._claimed(waiter)

    async def _wait_async(self) -> int:
        """The slow path for coroutines, under asyncio or trio; a cancelled waiter passes on a
        slot it was handed."""
        wake = async_wake()
        with self._queued(wake.set) as waiter:
            if not waiter.granted:
                with TimeLimit(self._clock, self.max_wait, current_deadline(), wake.set) as limit:
                    await wake.wait(limit)
        return self._claimed(waiter)

    def _wrap_sync(self, fn: Callable[..., T]) -> Callable[..., T]:
        try_acquire, wait, now = self._try_acquire, self._wait_sync, self._clock.now
        finished, failed, release = self._finished, self._failed, self._release

        def limited(*args: Any, **kwargs: Any) -> T:
            permit = try_acquire() or wait()
            started = now()
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                failed(permit, started, exc)
                raise
            except BaseException:
                release()
                raise
            finished(permit, started, result)
            return result

        return limited

    def _wrap_async(self, fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        try_acquire, wait, now = self._try_acquire, self._wait_async, self._clock.now
        finished, failed, release = self._finished, self._failed, self._release

        async def limited(*args: Any, **kwargs: Any) -> T:
            permit = try_acquire() or await wait()
            started = now()
            try:
                result = await fn(*args, **kwargs)
            except Exception as exc:
                failed(permit, started, exc)
                raise
            except BaseException:
                release()
                raise
            finished(permit, started, result)
            return result

        return limited


def _wake(waiters: Any) -> None:
    for waiter in waiters:
        waiter.wake()
