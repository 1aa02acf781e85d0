"""The dead-letter queue's events (see ``resilience._events``; names in docs/telemetry.md).

``policy`` is the queue's name. Fields are ids and small fixed words, never URLs, keys or
payloads: events become span attributes, log records and metric labels.
"""

from __future__ import annotations

from dataclasses import dataclass

from resilience._events import Event

__all__ = ["DeadLetterParked", "DeadLetterRecorded", "DeadLetterReplayed", "DeadLetterSucceeded"]


@dataclass(frozen=True, slots=True)
class DeadLetterRecorded(Event):
    """A call that ended without an answer was parked in the queue as ``entry_id``; ``why`` says
    how it ended: exhausted, in_progress, unknown, deadline, breaker_open, rejected,
    unreachable (HTTP) or failed (a ``DeadLetter``-decorated function)."""

    entry_id: str
    why: str


@dataclass(frozen=True, slots=True)
class DeadLetterReplayed(Event):
    """Entry ``entry_id`` was replayed; ``outcome`` is succeeded, failed or parked."""

    entry_id: str
    outcome: str


@dataclass(frozen=True, slots=True)
class DeadLetterSucceeded(Event):
    """A replay finished entry ``entry_id`` (2xx, or a response the server replayed); it is
    gone from the queue."""

    entry_id: str


@dataclass(frozen=True, slots=True)
class DeadLetterParked(Event):
    """Replays gave up on entry ``entry_id`` (a 422, or ``max_replays`` failed replays): it
    moved to the parked state, kept for inspection."""

    entry_id: str
