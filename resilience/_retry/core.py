"""The retry decision core: after each attempt, retry after how long, or give up and why.

Sans-IO: it reads no clock, sleeps nowhere and does not consult the retry budget itself (on
Redis that is I/O): the decision is a generator that yields when it needs the budget's answer.
The shells in ``resilience._retry.retry`` run the attempts, pass in ``now``, answer the budget
question (sync or with ``await``) and sleep for the delays it returns.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
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
        return self._noted(exc, _run_sync(self._next(now, exc), self.core.budget))

    def after_result(self, result: object, now: float) -> float | None:
        """Return the delay before the next attempt, or ``None`` to return ``result``."""
        on_result = self.core.on_result
        if on_result is None or not on_result(result):
            return None
        return _run_sync(self._next(now, result), self.core.budget)[0]

    async def after_exception_async(self, exc: BaseException, now: float) -> float | None:
        """``after_exception`` for coroutines: the budget (shared on ``redis.asyncio``) is
        consulted with ``await``; the decision is the same steps."""
        if not isinstance(exc, Exception) or not self.core.retries_on(exc):
            return None
        return self._noted(exc, await _run_async(self._next(now, exc), self.core.budget))

    async def after_result_async(self, result: object, now: float) -> float | None:
        on_result = self.core.on_result
        if on_result is None or not on_result(result):
            return None
        return (await _run_async(self._next(now, result), self.core.budget))[0]

    def _noted(self, exc: BaseException, decision: tuple[float | None, str]) -> float | None:
        delay, why = decision
        if delay is None:
            note = (
                f"resilience: Retry {self.core.name!r} gave up after attempt "
                f"{self.number} of {self.core.attempts} ({why})"
            )
            add_note(exc, note)
        return delay

    def _next(self, now: float, outcome: object) -> Steps:
        """The decision after a failed attempt, as steps: when a budget must be consulted it
        yields once and is sent whether the budget granted the retry (the shells do that I/O,
        sync or async); it returns (delay or None, why)."""
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
        if core.budget is not None:
            granted = yield  # on the budget's own clock
            if not granted:
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


Steps = Generator[None, bool, tuple[float | None, str]]


def _run_sync(steps: Steps, budget: RetryBudget | None) -> tuple[float | None, str]:
    try:
        next(steps)  # to the budget question, if there is one
        assert budget is not None
        steps.send(budget.try_spend())
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    raise AssertionError("retry steps ask the budget at most once")


async def _run_async(steps: Steps, budget: RetryBudget | None) -> tuple[float | None, str]:
    try:
        next(steps)
        assert budget is not None
        steps.send(await budget.try_spend_async())
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    raise AssertionError("retry steps ask the budget at most once")


def _describe(outcome: object) -> str:
    if isinstance(outcome, BaseException):
        return type(outcome).__qualname__
    return f"result {outcome!r}"[:200]
