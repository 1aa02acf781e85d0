"""Events the policies emit, and ``subscribe()``: the only seam to telemetry and logging.

Policies build an event only when somebody listens (one truth test on the hot path), hand it to
every listener, and never know who listens. Events are frozen dataclasses named in the past
tense. A listener that raises is logged and skipped; it never breaks the call it observes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

__all__ = [
    "BulkheadRejected",
    "CallRejected",
    "RateLimitAcquired",
    "CircuitStateChanged",
    "DeadlineExceeded",
    "Event",
    "FallbackUsed",
    "HedgeSent",
    "Listener",
    "RateLimited",
    "RetryBudgetExhausted",
    "RetryGaveUp",
    "RetryScheduled",
    "StoreRecovered",
    "StoreUnavailable",
    "emit",
    "listeners",
    "subscribe",
]

_log: Final = logging.getLogger("resilience")


@dataclass(frozen=True, slots=True)
class Event:
    """Base of all events; ``policy`` is the name of the policy instance that emitted it."""

    policy: str


@dataclass(frozen=True, slots=True)
class RetryScheduled(Event):
    """Attempt ``attempt`` failed with ``reason``; the next one starts after ``delay`` seconds."""

    attempt: int
    delay: float
    reason: str


@dataclass(frozen=True, slots=True)
class RetryGaveUp(Event):
    """Retrying stopped after ``attempts`` attempts: ``why`` is exhausted, budget or deadline."""

    attempts: int
    why: str
    reason: str


@dataclass(frozen=True, slots=True)
class RetryBudgetExhausted(Event):
    """A retry was refused because the shared retry budget was spent."""

    attempt: int


@dataclass(frozen=True, slots=True)
class CircuitStateChanged(Event):
    """The breaker moved from ``old`` to ``new`` (values of ``CircuitState``)."""

    old: str
    new: str


@dataclass(frozen=True, slots=True)
class CallRejected(Event):
    """An open (or saturated half-open) breaker refused a call; retry after ``retry_after``."""

    retry_after: float


@dataclass(frozen=True, slots=True)
class BulkheadRejected(Event):
    """The bulkhead had no permit and could not queue the call (or its wait ran out)."""

    max_concurrent: int


@dataclass(frozen=True, slots=True)
class RateLimited(Event):
    """A rate limiter refused a call; it could be admitted after ``retry_after`` seconds."""

    retry_after: float


@dataclass(frozen=True, slots=True)
class RateLimitAcquired(Event):
    """A rate limiter admitted a call, after waiting ``waited`` seconds (0.0: at once)."""

    waited: float


@dataclass(frozen=True, slots=True)
class StoreUnavailable(Event):
    """A shared store (Redis) failed with ``error``; the policy falls back to ``fallback``.

    Emitted once per outage, not per call."""

    error: str
    fallback: str


@dataclass(frozen=True, slots=True)
class StoreRecovered(Event):
    """The shared store answers again after an outage."""


@dataclass(frozen=True, slots=True)
class DeadlineExceeded(Event):
    """A Timeout or Deadline of ``timeout`` seconds ran out."""

    timeout: float


@dataclass(frozen=True, slots=True)
class HedgeSent(Event):
    """A hedge started attempt number ``attempt`` (2 for the first extra copy)."""

    attempt: int


@dataclass(frozen=True, slots=True)
class FallbackUsed(Event):
    """The fallback replaced a failure (``reason``) with its value or handler's result."""

    reason: str


Listener = Callable[[Event], object]

# A tuple swapped on (un)subscribe, so emitters iterate a snapshot without locking.
listeners: tuple[Listener, ...] = ()


def subscribe(listener: Listener) -> Callable[[], None]:
    """Call ``listener(event)`` for every event from now on; return a function that stops it."""
    global listeners
    listeners = (*listeners, listener)

    def unsubscribe() -> None:
        global listeners
        listeners = tuple(other for other in listeners if other is not listener)

    return unsubscribe


def emit(event: Event) -> None:
    """Hand ``event`` to every listener; a failing listener is logged, never raised."""
    for listener in listeners:
        try:
            listener(event)
        except Exception:
            _log.exception("resilience event listener %r failed on %r", listener, event)
