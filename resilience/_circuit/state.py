"""The circuit breaker's state machine, sans-IO: admit and record, given ``now``.

Rules (written down because they are where breakers differ):

- CLOSED admits everything. Each outcome goes into the window; once the window holds at least
  ``minimum_calls`` calls and the failure rate (or, if configured, the slow-call rate) reaches its
  threshold, the breaker opens. The window is cleared on every transition. Slow calls count only
  when a slow-call rate is configured.
- OPEN rejects, with ``retry_after`` = the time left of ``open_for``. The first admit (or read
  of the state) after ``open_for`` moves it to HALF_OPEN (lazily: no timer threads).
- HALF_OPEN admits at most ``half_open_calls`` concurrent trials and rejects the rest. A failed
  (or counted slow) trial reopens the breaker at once; ``half_open_calls`` passing trials close it.
- ``open()`` / ``close()`` by hand move there at once; opening an open breaker restarts its open
  period and closing a closed one clears its window (neither is a transition).
- Every transition bumps ``generation``. A permit carries the generation it was issued in; an
  outcome from an older generation (a late result from before the last transition) is ignored,
  so 50 concurrent failures open the breaker exactly once.
- A call that ends without an outcome (cancellation, ``BaseException``) is neither success nor
  failure, but its trial slot is still released.
"""

from __future__ import annotations

from enum import Enum

from resilience._circuit.window import OutcomeWindow

__all__ = ["REJECTED", "CircuitState", "StateMachine"]

# A permit is an int: generation << 1 | is_trial. Rejection is -1.
REJECTED = -1


class CircuitState(str, Enum):
    """Where a circuit breaker stands."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"

    def __str__(self) -> str:
        return self.value


_CLOSED, _OPEN, _HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN


class StateMachine:
    """One breaker's state; every method is O(1) and must be called under the breaker's lock.

    Transitions are appended to ``changes`` as ``(old, new)`` pairs; the owner drains and
    announces them after releasing its lock.
    """

    __slots__ = (
        "changes",
        "closed_permit",
        "failure_rate",
        "generation",
        "half_open_calls",
        "minimum_calls",
        "open_for",
        "opened_at",
        "slow_call_rate",
        "state",
        "trials_in_flight",
        "trials_passed",
        "window",
    )

    def __init__(
        self,
        window: OutcomeWindow,
        *,
        failure_rate: float,
        minimum_calls: int,
        open_for: float,
        half_open_calls: int,
        slow_call_rate: float | None,
    ) -> None:
        self.window = window
        self.failure_rate = failure_rate
        self.minimum_calls = minimum_calls
        self.open_for = open_for
        self.half_open_calls = half_open_calls
        self.slow_call_rate = slow_call_rate
        self.state = _CLOSED
        self.generation = 0
        self.opened_at = 0.0
        self.trials_in_flight = 0
        self.trials_passed = 0
        self.changes: list[tuple[CircuitState, CircuitState]] = []
        # The permit every call gets while CLOSED, or None: one attribute read, so the shells
        # can admit a call in a closed breaker without taking the lock.
        self.closed_permit: int | None = 0

    def admit(self, now: float) -> int:
        """Return a permit (``>= 0``) for a call starting at ``now``, or ``REJECTED``."""
        state = self.state
        if state is _CLOSED:
            return self.generation << 1
        if state is _OPEN:
            if now - self.opened_at < self.open_for:
                return REJECTED
            self._move(_HALF_OPEN, now)
        if self.trials_in_flight < self.half_open_calls:
            self.trials_in_flight += 1
            return self.generation << 1 | 1
        return REJECTED

    def retry_after(self, now: float) -> float:
        """Seconds until a rejected call could be admitted (0.0 while half-open)."""
        if self.state is _OPEN:
            # Within [0, open_for]: (opened_at + open_for) - now rounds past open_for by an ulp
            # when now is a hair after opened_at.
            return min(self.open_for, max(0.0, self.opened_at + self.open_for - now))
        return 0.0

    def record(self, permit: int, failed: bool, slow: bool, now: float) -> None:
        """Record the outcome of the call that held ``permit``."""
        if permit >> 1 != self.generation:
            return  # a late result from an earlier state: it says nothing about this one
        if permit & 1:
            self.trials_in_flight -= 1
            if failed or (slow and self.slow_call_rate is not None):
                self._move(_OPEN, now)
                return
            self.trials_passed += 1
            if self.trials_passed >= self.half_open_calls:
                self._move(_CLOSED, now)
            return
        window = self.window
        window.record(now, failed, slow)
        calls = window.calls
        if calls >= self.minimum_calls and (
            window.failures / calls >= self.failure_rate
            or (self.slow_call_rate is not None and window.slow / calls >= self.slow_call_rate)
        ):
            self._move(_OPEN, now)

    def release(self, permit: int) -> None:
        """Free ``permit`` without an outcome (the call was cancelled or interrupted)."""
        if permit & 1 and permit >> 1 == self.generation:
            self.trials_in_flight -= 1

    def poll(self, now: float) -> CircuitState:
        """The state at ``now``: an open breaker whose ``open_for`` has passed turns half-open."""
        if self.state is _OPEN and now - self.opened_at >= self.open_for:
            self._move(_HALF_OPEN, now)
        return self.state

    def force(self, state: CircuitState, now: float) -> None:
        """Move to ``state`` by hand (``open()`` / ``close()``).

        Forcing the current state is not a transition (no change, same generation), but it
        still does what was asked: opening an open breaker restarts its open period, and
        closing a closed one clears its window.
        """
        if self.state is not state:
            self._move(state, now)
        elif state is _OPEN:
            self.opened_at = now
        elif state is _CLOSED:
            self.window.reset()

    def _move(self, new: CircuitState, now: float) -> None:
        old = self.state
        self.state = new
        self.generation += 1
        self.trials_in_flight = 0
        self.trials_passed = 0
        self.window.reset()
        if new is _OPEN:
            self.opened_at = now
        self.closed_permit = self.generation << 1 if new is _CLOSED else None
        self.changes.append((old, new))
