"""The dead-letter queue's rules, sans-IO: which endings are parked, what a replay's answer
means, and when a replay run stops.

A keyed call is parked when it ends without an answer the caller can act on:

============  =============================================================  ===============
``why``       the ending                                                     request sent?
============  =============================================================  ===============
exhausted     a retryable status (408, 425, 429, 5xx but 501) after retries  yes
in_progress   409: an earlier attempt with the same key is still running     yes
unknown       the response was lost (read timeout, connection dropped)       maybe
deadline      the call's deadline ran out                                    maybe
breaker_open  an open circuit breaker refused it                             no
rejected      a full bulkhead or a rate limiter refused it                   no
unreachable   the connection could not be made                               no
failed        a decorated function raised (``DeadLetter`` policy)            --
============  =============================================================  ===============

Every other ending is an answer: a 2xx, a 4xx the caller must correct, a programming error
(``UnsupportedProtocol``, ``LocalProtocolError``). Against an origin that does not honour
``Idempotency-Key`` only endings that prove the request was not acted on are parked: a replay
of the others could act twice.

A replay's answer: 2xx, or any response marked ``Idempotent-Replayed`` (the server holds the
final answer), finishes the entry; 422 (the key was used with another payload) parks it at
once; anything else is a failed replay, and after ``max_replays`` of those the entry is parked.
A refusal by the replaying client's own breaker, bulkhead or rate limiter is no replay: the
entry is released untried and the run stops, so a replay never storms a dependency that is
still down.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import httpx

from resilience._errors import (
    BulkheadFullError,
    CircuitOpenError,
    DeadlineExceededError,
    RateLimitedError,
)
from resilience._validate import check_duration, check_positive_int

__all__ = [
    "DEAD_STATUSES",
    "NEVER_SENT",
    "Action",
    "ReplayRun",
    "Step",
    "StopReason",
    "dead_error",
    "dead_status",
    "replay_error",
    "replay_status",
]

# Statuses that say "not done (or not known to be done), try again later". 501 stays out: it
# will stay unimplemented. 409 is in_progress (on a keyed request: the original still runs).
DEAD_STATUSES: Final = frozenset({408, 409, 425, 429, 500, 502, 503, 504})

# The endings that prove the request was not acted on: parked even for origins that do not
# honour Idempotency-Key.
NEVER_SENT: Final = frozenset({"breaker_open", "rejected", "unreachable"})

_NEVER_SENT_ERRORS: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Programming errors: they would fail the same way on every replay.
_NOT_TRANSIENT: Final = (httpx.UnsupportedProtocol, httpx.LocalProtocolError)
_REFUSALS: Final = (CircuitOpenError, BulkheadFullError, RateLimitedError)


def dead_status(status: int) -> tuple[str, str] | None:
    """``(why, reason)`` when a call that ended with ``status`` is to be parked, else ``None``."""
    if status not in DEAD_STATUSES:
        return None
    if status == 409:
        return "in_progress", "409: an earlier attempt with this key was still running"
    return "exhausted", f"{status} after the retries the client allowed"


def dead_error(exc: BaseException) -> tuple[str, str] | None:
    """``(why, reason)`` when a call that raised ``exc`` is to be parked, else ``None``.

    The reason names the exception's class only: messages may quote URLs or payloads.
    """
    name = type(exc).__name__
    if isinstance(exc, CircuitOpenError):
        return "breaker_open", f"{name}: the circuit breaker was open"
    if isinstance(exc, (BulkheadFullError, RateLimitedError)):
        return "rejected", f"{name}: refused before it was sent"
    if isinstance(exc, DeadlineExceededError):
        return "deadline", f"{name}: the deadline ran out; the outcome is unknown"
    if isinstance(exc, _NEVER_SENT_ERRORS):
        return "unreachable", f"{name}: the connection could not be made"
    if isinstance(exc, _NOT_TRANSIENT) or not isinstance(exc, httpx.TransportError):
        return None
    return "unknown", f"{name}: the response was lost; the outcome is unknown"


Step = Literal["done", "park", "again", "refused"]


def replay_status(status: int, replayed: bool) -> tuple[Step, str]:
    """What a replay answered ``status`` (``replayed``: marked ``Idempotent-Replayed``) means."""
    if replayed:
        return "done", f"{status}, replayed by the server from its idempotency record"
    if 200 <= status < 300:
        return "done", f"{status}"
    if status == 422:
        return "park", "422: the key was used with another payload"
    return "again", f"{status}"


def replay_error(exc: BaseException) -> tuple[Step, str]:
    """What a replay that raised ``exc`` means: refused by the client's own policies (no
    replay, stop the run) or a failed replay."""
    if isinstance(exc, _REFUSALS):
        return "refused", f"{type(exc).__name__}: the replaying client refused it"
    return "again", f"{type(exc).__name__}"


StopReason = Literal["empty", "limit", "time", "refused", "failures"]


@dataclass(frozen=True, slots=True)
class Action:
    """What to do with a replayed entry: ``op`` for the store, ``error`` to keep with it."""

    op: Literal["done", "retry", "park", "release"]
    error: str = ""


class ReplayRun:
    """One replay run's bookkeeping: how many entries to claim next, what each outcome does to
    its entry, when to stop, and the totals. Not thread-safe: one run, one loop.

    ``limit`` bounds the entries replayed (``None``: all); ``max_time`` the seconds from
    ``started`` (checked before each entry; ``None``: no bound); ``stop_after_failures`` stops
    the run after that many failed replays in a row (``None``: never), since a dependency that
    fails every replay is still down; ``max_replays`` is how many failed replays park an entry.
    """

    def __init__(
        self,
        *,
        started: float,
        limit: int | None,
        max_time: float | None,
        stop_after_failures: int | None,
        max_replays: int,
    ) -> None:
        check_positive_int(limit, "limit", minimum=0)
        check_duration(max_time, "max_time")
        check_positive_int(stop_after_failures, "stop_after_failures")
        check_positive_int(max_replays, "max_replays")
        self.started = started
        self.limit = limit
        self.max_time = max_time
        self.stop_after_failures = stop_after_failures
        self.max_replays = max_replays
        self.succeeded = 0
        self.failed = 0
        self.parked = 0
        self.skipped = 0
        self._streak = 0
        self.stopped: StopReason | None = None

    @property
    def replayed(self) -> int:
        """Entries replayed so far (succeeded, failed or parked)."""
        return self.succeeded + self.failed + self.parked

    def wanted(self, now: float) -> int:
        """How many more entries the run may take (0: stop; ``stopped`` says why)."""
        if self.stopped is not None:
            return 0
        if self.max_time is not None and now - self.started >= self.max_time:
            self.stopped = "time"
            return 0
        if self.limit is None:
            return 1 << 30
        left = self.limit - self.replayed
        if left <= 0:
            self.stopped = "limit"
        return max(0, left)

    def exhausted(self) -> None:
        """The store has no more entries for this run."""
        if self.stopped is None:
            self.stopped = "empty"

    def skip(self) -> Action:
        """An entry this run cannot replay (no client for HTTP, no handler for its name)."""
        self.skipped += 1
        return Action("release")

    def unreadable(self, reason: str) -> Action:
        """An entry the store holds but cannot read back: parked unsent, with ``reason``
        (the class of the error, never the content). No sign of an outage either way."""
        self.parked += 1
        return Action("park", reason)

    def settle(self, replays: int, step: Step, detail: str) -> Action:
        """The outcome of replaying an entry that had failed ``replays`` times before."""
        if step == "done":
            self.succeeded += 1
            self._streak = 0
            return Action("done", detail)
        if step == "refused":
            self.stopped = "refused"
            return Action("release", detail)
        if step == "park":  # the dependency answered: no sign of an outage
            self.parked += 1
            self._streak = 0
            return Action("park", detail)
        self._streak += 1
        if self.stop_after_failures is not None and self._streak >= self.stop_after_failures:
            self.stopped = "failures"
        if replays + 1 >= self.max_replays:
            self.parked += 1
            return Action("park", f"{detail} (replay {replays + 1} of {self.max_replays})")
        self.failed += 1
        return Action("retry", detail)
