"""CircuitBreaker: the public policy wiring a window, the state machine, a lock and two shells."""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

from resilience import _events
from resilience._circuit.listeners import StateListener, StateListeners
from resilience._circuit.metrics import CircuitMetrics
from resilience._circuit.shared import SharedCircuit
from resilience._circuit.state import REJECTED, CircuitState, StateMachine
from resilience._circuit.window import CountWindow, OutcomeWindow, TimeWindow
from resilience._clock import SYSTEM_CLOCK, Clock
from resilience._errors import CircuitOpenError, RejectedError
from resilience._policy import Policy
from resilience._validate import (
    ExceptionFilter,
    check_duration,
    check_name,
    check_positive_int,
    check_ratio,
    exception_predicate,
    refuse_unknown,
)
from resilience.stores._memory import MemoryStore
from resilience.stores._protocols import ScriptStore, check_script_store

__all__ = ["CircuitBreaker", "CircuitMetrics", "StateListener"]

T = TypeVar("T")
_log = logging.getLogger("resilience")

_RENAMED = {"failure_on": "on", "failure_on_result": "on_result"}

# Every live breaker, so telemetry can observe states and totals without a per-call event.
breakers: weakref.WeakSet[CircuitBreaker] = weakref.WeakSet()


class CircuitBreaker(Policy):
    """Stop calling a failing dependency for a while, then let a few trial calls through.

    - The window is the last ``window`` seconds of calls, or the last ``window_calls`` calls
      when that is set. Once it holds ``minimum_calls`` calls and the failure rate reaches
      ``failure_rate`` (or, with ``slow_call_duration`` set, the share of calls taking at least
      that long reaches ``slow_call_rate``), the breaker opens.
    - Open, it raises ``CircuitOpenError`` (with ``retry_after``) without running the call, for
      ``open_for`` seconds; then it is half-open and admits exactly ``half_open_calls``
      concurrent trials. One failing (or slow) trial reopens it; all of them passing closes it.
    - ``on`` says which exceptions are failures (others count as successes: the dependency
      answered); ``on_result`` marks return values as failures.
      Cancellation and other ``BaseException`` are neither, but release their trial slot; so
      is a ``RejectedError`` raised inside (a bulkhead or limiter refused the call locally:
      the dependency never saw it), whatever ``on`` says.
    - ``name`` (default "circuit_breaker") labels events, metrics and errors.

    - ``store``: ``None`` or a ``MemoryStore`` keeps it in this process; a ``RedisStore`` (or
      any ``ScriptStore``) shares it with every replica of the same ``name``, which is then
      required (one round trip per admit and per record, on Redis's clock). ``trial_lease``
      (seconds; ``None``: ``max(open_for, 10.0)``): how long a shared half-open trial may go
      unreported (its owner may have died) before another replica may take its slot.

    No lock is held while the guarded call runs: the lock covers O(1) bookkeeping only, and
    listeners run after it is released. Thread-safe and asyncio-safe; one instance may guard
    sync and async functions at once. The states and their rules: Concepts,
    "Circuit breaker", in the documentation.
    """

    __slots__ = (
        "__weakref__",
        "_announce",
        "_announcer",
        "_clock",
        "_failure_on",
        "_failure_on_result",
        "_lock",
        "_machine",
        "_settings",
        "_shared",
        "_slow_call_duration",
        "_totals",
        "name",
    )

    def __init__(
        self,
        name: str | None = None,
        *,
        failure_rate: float = 0.5,
        minimum_calls: int = 10,
        window: float = 30.0,
        window_calls: int | None = None,
        open_for: float = 30.0,
        half_open_calls: int = 1,
        slow_call_duration: float | None = None,
        slow_call_rate: float = 1.0,
        on: ExceptionFilter = Exception,
        on_result: Callable[[Any], bool] | None = None,
        clock: Clock | None = None,
        store: MemoryStore | ScriptStore | None = None,
        trial_lease: float | None = None,
        **renamed: NoReturn,
    ) -> None:
        refuse_unknown("CircuitBreaker", renamed, _RENAMED)
        # The store first: something that is no store is refused as such, named or not.
        scripts = None if store is None or isinstance(store, MemoryStore) else store
        if scripts is not None:
            scripts = check_script_store(scripts)
        name = check_name(name, "circuit_breaker", shared=scripts is not None)
        check_ratio(failure_rate, "failure_rate")
        check_positive_int(minimum_calls, "minimum_calls")
        check_duration(window, "window", allow_zero=False)
        check_positive_int(window_calls, "window_calls")
        if window_calls is not None and minimum_calls > window_calls:
            raise ValueError(
                f"minimum_calls must be <= window_calls ({window_calls}), got {minimum_calls}"
            )
        check_duration(open_for, "open_for")
        check_positive_int(half_open_calls, "half_open_calls")
        check_duration(slow_call_duration, "slow_call_duration", allow_zero=False)
        check_ratio(slow_call_rate, "slow_call_rate")
        if on_result is not None and not callable(on_result):
            raise TypeError(f"on_result must be a predicate or None, got {on_result!r}")
        check_duration(trial_lease, "trial_lease", allow_zero=False)
        self.name = name
        self._settings: dict[str, Any] = {
            "name": name,
            "failure_rate": failure_rate,
            "minimum_calls": minimum_calls,
            "window": window,
            "window_calls": window_calls,
            "open_for": open_for,
            "half_open_calls": half_open_calls,
            "slow_call_duration": slow_call_duration,
            "slow_call_rate": slow_call_rate,
            "on": on,
            "on_result": on_result,
            "clock": clock,
            "store": store,
            "trial_lease": trial_lease,
        }
        self._failure_on = exception_predicate(on, "on")
        self._failure_on_result = on_result
        self._slow_call_duration = slow_call_duration
        self._clock = clock or SYSTEM_CLOCK
        outcomes: OutcomeWindow = (
            CountWindow(window_calls) if window_calls is not None else TimeWindow(window)
        )
        self._machine = StateMachine(
            outcomes,
            failure_rate=failure_rate,
            minimum_calls=minimum_calls,
            open_for=open_for,
            half_open_calls=half_open_calls,
            slow_call_rate=slow_call_rate if slow_call_duration is not None else None,
        )
        self._lock = threading.Lock()
        self._announcer = StateListeners(name, self._lock)
        self._announce = self._announcer.announce
        # successes, failures, rejections, interrupted
        self._totals = [0, 0, 0, 0]
        self._shared: SharedCircuit | None = None
        if scripts is not None:
            self._shared = SharedCircuit(
                scripts,
                name,
                self._settings,
                totals=self._totals,
                lock=self._lock,
                clock=self._clock,
                announce=self._announce,
            )
        breakers.add(self)

    def __repr__(self) -> str:
        shared = self._shared
        state = self._machine.state if shared is None else shared.last
        return f"CircuitBreaker({self.name!r}, state={state.value!r})"

    def replace(self, **changes: Any) -> CircuitBreaker:
        """A new breaker with this one's settings bar ``changes`` (any constructor keyword),
        and a fresh state of its own (the transports keep one per origin)."""
        return CircuitBreaker(**{**self._settings, **changes})

    # -- observation and control -------------------------------------------------------------

    @property
    def state(self) -> CircuitState:
        """The current state; an open breaker whose ``open_for`` has passed reads HALF_OPEN.

        Shared on Redis: one round trip; with a ``redis.asyncio`` client (use ``state_async``)
        or while Redis is unavailable, the state this instance saw last."""
        if self._shared is not None:
            return self._shared.poll()[0]
        now = self._clock.now()
        with self._lock:
            state = self._machine.poll(now)
            changes = self._drain_locked()
        if changes:
            self._announce(changes)
        return state

    async def state_async(self) -> CircuitState:
        """``state`` for coroutines: a breaker shared through a ``redis.asyncio`` client reads
        the fleet's state (one round trip) instead of the state it saw last."""
        if self._shared is not None:
            return await self._shared.poll_async()
        return self.state

    async def open_async(self) -> None:
        """``open`` for coroutines (a breaker shared through ``redis.asyncio`` needs it)."""
        if self._shared is not None:
            await self._shared.force_async(b"o")
        else:
            self.open()

    async def close_async(self) -> None:
        """``close`` for coroutines (a breaker shared through ``redis.asyncio`` needs it)."""
        if self._shared is not None:
            await self._shared.force_async(b"c")
        else:
            self.close()

    @property
    def metrics(self) -> CircuitMetrics:
        """A consistent snapshot of the window and the lifetime totals (``state`` as above).

        Shared on Redis, the window is the fleet's and the totals are this instance's.
        """
        if self._shared is not None:
            state, calls, failures, slow = self._shared.poll()  # I/O: not under the lock
            with self._lock:
                totals = tuple(self._totals)
                changes = None
        else:
            now = self._clock.now()
            with self._lock:
                machine = self._machine
                state = machine.poll(now)
                window = machine.window
                window.refresh(now)
                calls, failures, slow = window.calls, window.failures, window.slow
                totals = tuple(self._totals)
                changes = self._drain_locked()
        if changes:
            self._announce(changes)
        return CircuitMetrics.of(state, calls, failures, slow, totals)

    def open(self) -> None:
        """Open the breaker now, for ``open_for`` seconds (then it turns half-open)."""
        self._force(CircuitState.OPEN)

    def close(self) -> None:
        """Close the breaker now and clear its window (also when it is already closed)."""
        self._force(CircuitState.CLOSED)

    def add_listener(self, listener: StateListener) -> Callable[[], None]:
        """Call ``listener(CircuitStateChanged)`` on each transition; return its remover.

        Listeners run after the breaker's lock is released, in the thread that caused the
        transition; one that raises is logged and skipped.
        """
        return self._announcer.add(listener)

    # -- the sans-IO steps the shells call ---------------------------------------------------

    def _admit(self) -> int:
        now = self._clock.now()
        machine = self._machine
        with self._lock:
            permit = machine.admit(now)
            if permit == REJECTED:
                self._totals[2] += 1
                retry_after = machine.retry_after(now)
            changes = self._drain_locked()
        if changes:
            self._announce(changes)
        if permit == REJECTED:
            if _events.listeners:
                _events.emit(_events.CallRejected(self.name, retry_after))
            raise CircuitOpenError(self.name, retry_after)
        return permit

    def _record(self, permit: int, failed: bool, started: float) -> None:
        now = self._clock.now()
        limit = self._slow_call_duration
        slow = limit is not None and now - started >= limit
        machine = self._machine
        with self._lock:
            machine.record(permit, failed, slow, now)
            self._totals[failed] += 1
            if not machine.changes:
                return
            changes = self._drain_locked()
        if changes:
            self._announce(changes)

    def _exception_failed(self, exc: Exception) -> bool:
        return self._judge(self._failure_on, exc, "on")

    def _result_failed(self, result: object) -> bool:
        judge = self._failure_on_result
        assert judge is not None, "only called when on_result is set"
        return self._judge(judge, result, "on_result")

    def _judge(self, predicate: Callable[[Any], bool], outcome: object, what: str) -> bool:
        """Apply a user predicate; one that raises counts a failure (never leaks the permit)."""
        try:
            return bool(predicate(outcome))
        except Exception:
            _log.exception("circuit breaker %r: %s raised; counting a failure", self.name, what)
            return True

    def _release(self, permit: int) -> None:
        with self._lock:
            self._machine.release(permit)
            self._totals[3] += 1

    def _force(self, state: CircuitState) -> None:
        if self._shared is not None:
            self._shared.step(b"o" if state is CircuitState.OPEN else b"c")
            return
        with self._lock:
            self._machine.force(state, self._clock.now())
            changes = self._drain_locked()
        if changes:
            self._announce(changes)

    def _drain_locked(self) -> list[tuple[CircuitState, CircuitState]] | None:
        machine = self._machine
        if not machine.changes:
            return None
        changes, machine.changes = machine.changes, []
        return changes

    # -- shells: one pair for both homes of the state (this process, or Redis) -----------------

    def _steps(self, coroutines: bool) -> tuple[Any, ...]:
        """What a shell calls: admit, record, release, and where to read ``closed_permit`` (set
        while the machine in this process is closed: no admit step needed)."""
        if self._shared is not None:
            return (*self._shared.steps(coroutines), self._shared)
        return self._admit, self._record, self._release, self._machine

    def _wrap_sync(self, fn: Callable[..., T]) -> Callable[..., T]:
        admit, record, release, machine = self._steps(coroutines=False)
        exception_failed, now = self._exception_failed, self._clock.now
        judge = self._result_failed if self._failure_on_result is not None else None
        timed = self._slow_call_duration is not None  # otherwise the start time is not needed

        def guarded(*args: Any, **kwargs: Any) -> T:
            permit = machine.closed_permit
            if permit is None:
                permit = admit()
            started = now() if timed else 0.0
            try:
                result = fn(*args, **kwargs)
            except RejectedError:
                release(permit)  # refused inside, never sent: no outcome
                raise
            except Exception as exc:
                record(permit, exception_failed(exc), started)
                raise
            except BaseException:
                release(permit)
                raise
            record(permit, judge is not None and judge(result), started)
            return result

        return guarded

    def _wrap_async(self, fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        # Shared on redis.asyncio the steps are coroutines; in this process they are the sync
        # ones (O(1) under a lock): awaited only when they must be.
        awaits = self._shared is not None
        admit, record, release, machine = self._steps(coroutines=awaits)
        exception_failed, now = self._exception_failed, self._clock.now
        judge = self._result_failed if self._failure_on_result is not None else None
        timed = self._slow_call_duration is not None

        async def guarded(*args: Any, **kwargs: Any) -> T:
            permit = machine.closed_permit
            if permit is None:
                permit = await admit() if awaits else admit()
            started = now() if timed else 0.0
            try:
                result = await fn(*args, **kwargs)
            except RejectedError:
                done = release(permit)  # refused inside, never sent: no outcome
                if awaits:
                    await done
                raise
            except Exception as exc:
                done = record(permit, exception_failed(exc), started)
                if awaits:
                    await done
                raise
            except BaseException:
                done = release(permit)
                if awaits:
                    await done
                raise
            done = record(permit, judge is not None and judge(result), started)
            if awaits:
                await done
            return result

        return guarded
