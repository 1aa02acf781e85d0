"""CircuitMetrics: a snapshot of one breaker, its window and its lifetime totals."""

from __future__ import annotations

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
    """Calls that ended by cancellation or another BaseException: neither success nor failure."""
