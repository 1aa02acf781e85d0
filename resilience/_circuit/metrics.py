"""CircuitMetrics: a snapshot of one breaker, its window and its lifetime totals."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from resilience._circuit.state import CircuitState

__all__ = ["CircuitMetrics"]


@dataclass(frozen=True, slots=True)
class CircuitMetrics:
    """A snapshot of a breaker: its window (since the last transition) and lifetime totals."""

    state: CircuitState
    calls: int
    """Calls recorded in the window."""
    failures: int
    slow_calls: int
    failure_rate: float
    """failures / calls in the window (0.0 when empty)."""
    slow_call_rate: float
    total_successes: int
    """Calls that ended with a non-failure outcome, since construction."""
    total_failures: int
    total_rejections: int
    """Calls refused without running (open, or half-open with its trials taken)."""
    total_interrupted: int
    """Calls that ended with no outcome: cancelled, another BaseException, or refused locally
    by a policy inside (a ``RejectedError``)."""

    @classmethod
    def of(
        cls, state: CircuitState, calls: int, failures: int, slow: int, totals: Sequence[int]
    ) -> CircuitMetrics:
        """The snapshot of a window's counts and a breaker's ``totals`` (successes, failures,
        rejections, interrupted), with the window's rates worked out."""
        successes, failed, rejected, interrupted = totals
        return cls(
            state=state,
            calls=calls,
            failures=failures,
            slow_calls=slow,
            failure_rate=failures / calls if calls else 0.0,
            slow_call_rate=slow / calls if calls else 0.0,
            total_successes=successes,
            total_failures=failed,
            total_rejections=rejected,
            total_interrupted=interrupted,
        )
