"""The retry decision core: after each attempt, retry after how long, or give up and why.

Sans-IO: it reads no clock and sleeps nowhere. The shells in ``resilience._retry.retry`` run the
attempts, pass in ``now`` and sleep for the delays it returns.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from resilience import _events
from resilience._context import current_deadline
from resilience._errors import add_note
from resilience._retry.backoff import Backoff
from resilience._retry.budget import RetryBudget

__all__ = ["Attempts", "RetryCore"]


class RetryCore:
    """Frozen retry configuration plus the rule that turns an outcome into a decision."""

    __slots__ = ("attempts", "backoff", "budget", "delay_hint", "name", "on_result", "retries_on")

    def __init__(
        self,
        *,
        name: str,
        attempts: int,
        retries_on: Callable[[BaseException], bool],
        on_result: Callable[[Any], bool] | None,
        backoff: Backoff,
        budget: RetryBudget | None,
        delay_hint: Callable[[object], float | None] | None = None,
    ) -> None:
        self.name = name
        self.attempts = attempts
        self.retries_on = retries_on
        self.on_result = on_result
        self.backoff = backoff
        self.budget = budget
        self.delay_hint = delay_hint


class Attempts:
    """The state of one call under retry: which attempt runs, and the last delay slept.

    Created after the first attempt failed; the shells count the first attempt against the
    budget themselves (``budget.record_attempt``) so the success path allocates nothing.
    """

    __slots__ = ("core", "number", "previous_delay")

    def __init__(self, core: RetryCore) -> None:
        self.core = core
        self.number = 1
        self.previous_delay: float | None = None

    def after_exception(self, exc: BaseException, now: float) -> float | None:
        """Return the delay before the next attempt, or ``None`` to re-raise ``exc``.

        Only ``Exception`` subclasses matching ``on`` are retried. When retrying stops for a
        retryable failure, a PEP 678 note on ``exc`` says after which attempt and why.
        """
        if not isinstance(exc, Exception) or not self.core.retries_on(exc):
            return None
        delay, why = self._next(now, exc)
        if delay is None:
            note = (
                f"resilience: Retry {self.core.name!r} gave up after attempt "
                f"{self.number} of {self.core.attempts} ({why})"
            )
            add_note(exc, note)
        return delay

    def after_result(self, result: object, now: float) -> float | None:
        """Return the delay before the next attempt, or ``None`` to return ``result``."""
        on_result = self.core.on_result
        if on_result is None or not on_result(result):
            return None
        return self._next(now, result)[0]

    def _next(self, now: float, outcome: object) -> tuple[float | None, str]:
        core = self.core
        number = self.number
        reason = _describe(outcome)
        if number >= core.attempts:
            return self._give_up("attempts exhausted", reason)
        delay = core.backoff.delay(number, self.previous_delay)
        if core.delay_hint is not None:
            hint = core.delay_hint(outcome)
            if hint is not None and delay < hint < math.inf:  # ignore nan, inf and shorter
                delay = hint  # the server knows better (Retry-After): wait at least that long
        scope = current_deadline()
        if scope is not None and delay >= scope.remaining():
            return self._give_up("deadline would pass during the backoff", reason)
        budget = core.budget
        if budget is not None and not budget.try_spend():  # on the budget's own clock
            if _events.listeners:
                _events.emit(_events.RetryBudgetExhausted(core.name, number))
            return self._give_up("retry budget spent", reason)
        if _events.listeners:
            _events.emit(_events.RetryScheduled(core.name, number, delay, reason))
        self.number = number + 1
        self.previous_delay = delay
        return delay, ""

    def _give_up(self, why: str, reason: str) -> tuple[None, str]:
        if _events.listeners:
            _events.emit(_events.RetryGaveUp(self.core.name, self.number, why, reason))
        return None, why


def _describe(outcome: object) -> str:
    if isinstance(outcome, BaseException):
        return type(outcome).__qualname__
    return f"result {outcome!r}"[:200]
