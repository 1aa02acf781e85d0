"""Resilience events as stdlib log records on the ``resilience`` logger.

Levels follow what an operator should see without asking: a breaker opening is a WARNING, its
recovery INFO; a retry or a rejection happens per call during an incident, so it is DEBUG.
Each record carries the event's fields in ``extra`` (``resilience_event``, ``resilience_policy``
and ``resilience_<field>``) for structured formatters.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Final

from resilience import _events
from resilience.deadletter._events import (
    DeadLetterParked,
    DeadLetterRecorded,
    DeadLetterReplayed,
    DeadLetterSucceeded,
)

__all__ = ["event_name", "log_event"]

_log: Final = logging.getLogger("resilience")

# The stable name of each event kind: span event names and log fields use it.
_NAMES: Final[dict[type[_events.Event], str]] = {
    _events.RetryScheduled: "retry.scheduled",
    _events.RetryGaveUp: "retry.gave_up",
    _events.RetryBudgetExhausted: "retry.budget_exhausted",
    _events.CircuitStateChanged: "circuit_breaker.state_changed",
    _events.CallRejected: "circuit_breaker.rejected",
    _events.BulkheadRejected: "bulkhead.rejected",
    _events.RateLimited: "rate_limiter.limited",
    _events.ConcurrencyLimited: "concurrency.limited",
    _events.Throttled: "throttle.refused",
    _events.StoreUnavailable: "store.unavailable",
    _events.StoreRecovered: "store.recovered",
    _events.DeadlineExceeded: "deadline.exceeded",
    _events.HedgeSent: "hedge.sent",
    _events.FallbackUsed: "fallback.used",
    _events.IdempotentReplayed: "idempotency.replayed",
    _events.IdempotencyConflict: "idempotency.conflict",
    _events.IdempotencyMismatch: "idempotency.mismatch",
    _events.IdempotencyClaimLost: "idempotency.claim_lost",
    DeadLetterRecorded: "dead_letter.recorded",
    DeadLetterReplayed: "dead_letter.replayed",
    DeadLetterSucceeded: "dead_letter.succeeded",
    DeadLetterParked: "dead_letter.parked",
}


def event_name(event: _events.Event) -> str:
    """``resilience.<kind>``, e.g. ``resilience.retry.scheduled``."""
    return "resilience." + _NAMES.get(type(event), type(event).__name__)


def _level(event: _events.Event) -> int | None:
    if isinstance(event, _events.CircuitStateChanged):
        return logging.WARNING if event.new == "open" else logging.INFO
    if isinstance(event, _events.RetryGaveUp):
        return logging.INFO
    if isinstance(event, DeadLetterParked):
        return logging.WARNING  # given up on: someone has to look at it
    if isinstance(event, (_events.StoreUnavailable, _events.StoreRecovered)):
        return logging.DEBUG  # the store itself logs the outage once, at WARNING
    return logging.DEBUG


def _message(event: _events.Event) -> str:
    fields = dataclasses.asdict(event)
    policy = fields.pop("policy")
    details = " ".join(f"{name}={value!r}" for name, value in fields.items())
    if isinstance(event, _events.RetryGaveUp):
        details += f" ({event.explanation})"  # the stable ``why`` in English
    return f"{event_name(event)} {policy!r} {details}".rstrip()


def log_event(event: _events.Event) -> None:
    """A listener: log ``event`` on the ``resilience`` logger at its level, if enabled."""
    level = _level(event)
    if level is None or not _log.isEnabledFor(level):
        return
    extra = {f"resilience_{name}": value for name, value in dataclasses.asdict(event).items()}
    extra["resilience_event"] = event_name(event)
    _log.log(level, "%s", _message(event), extra=extra)
