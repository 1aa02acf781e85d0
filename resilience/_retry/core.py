"""The retry decision core: after each attempt, retry after how long, or give up and why.

Sans-IO: it reads no clock, sleeps nowhere and does not consult the retry budget (on Redis that
is I/O). The shells in ``resilience._retry.retry`` run the attempts, pass in the time left
before the current deadline, sleep for the delays it returns, and, when a budget is set, ask
the budget (sync or with ``await``) and hand its answer back through ``budget_answered``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from resilience import _events
from resilience._errors import RejectedError, add_note
from resilience._retry.backoff import Backoff

__all__ = ["REJECTIONS", "Attempts", "Rejections", "RetryCore"]

# What Retry does with a RejectedError (a policy inside refused the call, nothing was sent):
# "final" ends the retries at once, whatever ``on`` says (the SRE book's "overloaded; don't
# retry": retry at the layer above the one rejecting); "wait" retries one that ``on`` matches
# after max(backoff, its retry_after, delay_hint), never past the deadline.
Rejections = Literal["final", "wait"]
REJECTIONS: tuple[Rejections, ...] = ("final", "wait")


@dataclass(frozen=True, slots=True)
class RetryCore:
    """The frozen retry configuration the decisions read (validated by ``Retry``)."""

    name: str
    attempts: int
    retries_on: Callable[[BaseException], bool]
    on_result: Callable[[Any], bool] | None
    backoff: Backoff
    budgeted: bool  # each retry needs the budget's grant (the shells ask it)
    delay_hint: Callable[[object], float | None] | None = None
    rejections: Rejections = "final"


class Attempts:
    """The state of one call under retry: which attempt runs, and the last delay slept.

    Created after the first attempt failed; the shells count the first attempt against the
    budget themselves (``budget.record_attempt``) so the success path allocates nothing.
    ``time_left`` is the seconds before the current deadline (``None``: no deadline).
    """

    __slots__ = ("_pending", "core", "number", "previous_delay")

    def __init__(self, core: RetryCore) -> None:
        self.core = core
        self.number = 1
        self.previous_delay: float | None = None
        self._pending: tuple[object, float, str] | None = None

    def after(
        self, error: BaseException | None, result: object, time_left: float | None
    ) -> float | None:
        """``after_exception(error)`` when the attempt raised, else ``after_result(result)``."""
        if error is not None:
            return self.after_exception(error, time_left)
        return self.after_result(result, time_left)

    def after_exception(self, exc: BaseException, time_left: float | None) -> float | None:
        """Return the delay before the next attempt, or ``None`` to re-raise ``exc``.

        Only ``Exception`` subclasses matching ``on`` are retried. When retrying stops for a
        retryable failure, a PEP 678 note on ``exc`` says after which attempt and why. With a
        budget, a delay returned is a request: ``budget_answered`` decides it.

        A ``RejectedError`` with ``rejections="final"`` ends the retries whatever ``on`` says,
        noted "not retried: refused locally by ..." (no budget asked); with "wait", one that
        ``on`` matches waits at least its ``retry_after``.
        """
        if not isinstance(exc, Exception):
            return None
        if isinstance(exc, RejectedError):
            if self.core.rejections == "final":
                self._refused(exc)
                return None
            if not self.core.retries_on(exc):
                return None
            return self._decide(exc, time_left, getattr(exc, "retry_after", None))
        if not self.core.retries_on(exc):
            return None
        return self._decide(exc, time_left)

    def after_result(self, result: object, time_left: float | None) -> float | None:
        """Return the delay before the next attempt, or ``None`` to return ``result``."""
        on_result = self.core.on_result
        if on_result is None or not on_result(result):
            return None
        return self._decide(result, time_left)

    def budget_answered(self, granted: bool) -> float | None:
        """The budget's answer to the retry just requested: its delay, or ``None`` (give up)."""
        assert self._pending is not None, "budget_answered follows a requested retry"
        outcome, delay, reason = self._pending
        self._pending = None
        if not granted:
            if _events.listeners:
                _events.emit(_events.RetryBudgetExhausted(self.core.name, self.number))
            self._give_up("budget", outcome, reason)
            return None
        return self._schedule(delay, reason)

    def _decide(
        self, outcome: object, time_left: float | None, least: object = None
    ) -> float | None:
        """The next delay for a retryable ``outcome``: the backoff's, lengthened to ``least``
        (a rejection's ``retry_after``) and to the ``delay_hint``; ``None`` to give up."""
        core = self.core
        reason = _describe(outcome)
        if self.number >= core.attempts:
            self._give_up("attempts", outcome, reason)
            return None
        delay = core.backoff.delay(self.number, self.previous_delay)
        if isinstance(least, (int, float)) and delay < least < math.inf:
            delay = float(least)  # the policy said when it admits calls again
        if core.delay_hint is not None:
            hint = core.delay_hint(outcome)
            if hint is not None and delay < hint < math.inf:  # ignore nan, inf and shorter
                delay = hint  # the server knows better (Retry-After): wait at least that long
        if time_left is not None and delay >= time_left:
            self._give_up("deadline", outcome, reason)
            return None
        if core.budgeted:
            self._pending = (outcome, delay, reason)
            return delay
        return self._schedule(delay, reason)

    def _schedule(self, delay: float, reason: str) -> float:
        if _events.listeners:
            _events.emit(_events.RetryScheduled(self.core.name, self.number, delay, reason))
        self.number += 1
        self.previous_delay = delay
        return delay

    def _refused(self, exc: RejectedError) -> None:
        """A policy inside refused the call: no retry, and the note says who refused."""
        if _events.listeners:
            _events.emit(
                _events.RetryGaveUp(self.core.name, self.number, "rejected", _describe(exc))
            )
        add_note(
            exc,
            f"resilience: not retried: refused locally by {exc.kind} {exc.name!r} "
            f"(Retry {self.core.name!r}, rejections='final')",
        )

    def _give_up(self, why: _events.RetryGaveUpWhy, outcome: object, reason: str) -> None:
        """Tell listeners, and note on a failure that it ended the retries (and why)."""
        if _events.listeners:
            _events.emit(_events.RetryGaveUp(self.core.name, self.number, why, reason))
        if isinstance(outcome, BaseException):
            add_note(
                outcome,
                f"resilience: Retry {self.core.name!r} gave up after attempt "
                f"{self.number} of {self.core.attempts} ({_events.RETRY_GAVE_UP[why]})",
            )


def _describe(outcome: object) -> str:
    if isinstance(outcome, BaseException):
        return type(outcome).__qualname__
    return f"result {outcome!r}"[:200]
