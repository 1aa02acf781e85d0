"""Retry: the public policy and its two thin shells over ``RetryCore``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from resilience._clock import SYSTEM_CLOCK, Clock
from resilience._context import remaining
from resilience._policy import Policy
from resilience._retry.backoff import Backoff
from resilience._retry.budget import RetryBudget
from resilience._retry.core import REJECTIONS, Attempts, Rejections, RetryCore
from resilience._validate import (
    ExceptionFilter,
    check_name,
    check_positive_int,
    exception_predicate,
)

__all__ = ["Retry"]

T = TypeVar("T")

_DEFAULT_BACKOFF = Backoff()


class Retry(Policy):
    """Call again on failure, with jittered backoff, within a budget and the current deadline.

    - ``attempts`` counts the first call (``attempts=1`` never retries).
    - ``on``: which exceptions are retried — a class, a tuple of classes or a predicate.
      Others propagate after one call. ``BaseException`` (cancellation, ``KeyboardInterrupt``)
      is never retried.
    - ``on_result``: a predicate on the return value; while it is true the call is retried, and
      when attempts run out the last result is returned.
    - ``backoff``: the delay before each retry (``Backoff``); a zero delay does not sleep.
    - ``budget``: a shared ``RetryBudget``; when it is spent the failure surfaces at once.
    - ``delay_hint``: a function of the failed outcome (exception or result) returning a minimum
      delay in seconds, or ``None`` — e.g. a server's ``Retry-After``, or a rejection's
      ``retry_after``. It replaces the backoff delay when longer.
    - The nearest ``Deadline``/``Timeout`` is obeyed: when the next delay would cross it, the
      last outcome is returned or raised at once instead of sleeping.
    - ``rejections``: what a ``RejectedError`` from a policy inside (an open breaker, a full
      bulkhead, a rate or concurrency limit, a throttle: nothing was sent) does. ``"final"``
      (the default) ends the retries at once whatever ``on`` says, spends no budget and notes
      "not retried: refused locally by circuit breaker 'x'" on the error: retrying a refusal
      only polls it. ``"wait"`` retries one that ``on`` matches after the longest of the
      backoff delay, its ``retry_after`` and ``delay_hint`` — or gives up when that wait would
      pass the deadline. A ``DeadlineExceededError`` from an inner ``Timeout`` is no
      rejection: ``on`` decides it as any failure.

    When retrying stops on an exception, the **original** exception is re-raised with a PEP 678
    note ("gave up after attempt 3 of 3 (attempts exhausted)"); nothing is wrapped.
    """

    __slots__ = ("_budget", "_clock", "_core", "_options")

    def __init__(
        self,
        attempts: int = 3,
        *,
        on: ExceptionFilter = Exception,
        on_result: Callable[[Any], bool] | None = None,
        backoff: Backoff = _DEFAULT_BACKOFF,
        budget: RetryBudget | None = None,
        clock: Clock | None = None,
        delay_hint: Callable[[Any], float | None] | None = None,
        name: str | None = None,
        rejections: Rejections = "final",
    ) -> None:
        name = check_name(name, "retry")
        check_positive_int(attempts, "attempts")
        if not isinstance(rejections, str) or rejections not in REJECTIONS:
            raise ValueError(f"rejections must be 'final' or 'wait', got {rejections!r}")
        retries_on = exception_predicate(on, "on")
        if on_result is not None and not callable(on_result):
            raise TypeError(f"on_result must be a predicate or None, got {on_result!r}")
        if not isinstance(backoff, Backoff):
            raise TypeError(f"backoff must be a Backoff, got {backoff!r}")
        if delay_hint is not None and not callable(delay_hint):
            raise TypeError(f"delay_hint must be callable or None, got {delay_hint!r}")
        if budget is not None and not isinstance(budget, RetryBudget):
            raise TypeError(f"budget must be a RetryBudget or None, got {budget!r}")
        self._options: dict[str, Any] = {
            "attempts": attempts,
            "on": on,
            "on_result": on_result,
            "backoff": backoff,
            "budget": budget,
            "clock": clock,
            "delay_hint": delay_hint,
            "name": name,
            "rejections": rejections,
        }
        self._clock = clock or SYSTEM_CLOCK
        self._budget = budget
        self._core = RetryCore(
            name=name,
            attempts=attempts,
            retries_on=retries_on,
            on_result=on_result,
            backoff=backoff,
            budgeted=budget is not None,
            delay_hint=delay_hint,
            rejections=rejections,
        )

    @property
    def name(self) -> str:
        return self._core.name

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def attempts(self) -> int:
        return self._core.attempts

    @property
    def backoff(self) -> Backoff:
        return self._core.backoff

    @property
    def budget(self) -> RetryBudget | None:
        return self._budget

    @property
    def rejections(self) -> Rejections:
        """What a ``RejectedError`` from inside does: "final" or "wait"."""
        return self._core.rejections

    def replace(self, **changes: Any) -> Retry:
        """A new ``Retry`` with this one's settings bar ``changes`` (any constructor keyword)."""
        return Retry(**{**self._options, **changes})

    def __repr__(self) -> str:
        return f"Retry({self.attempts!r}, name={self.name!r}, backoff={self.backoff!r})"

    # The shells run the first attempt inline (the success path allocates nothing), then hand
    # any failure to the loop, which asks the core what to do after each attempt: the time left
    # before the deadline goes in, a delay (or None: stop) comes out; with a budget, the shell
    # asks it and hands the answer back.

    def _wrap_sync(self, fn: Callable[..., T]) -> Callable[..., T]:
        core, budget, sleep = self._core, self._budget, self._clock.sleep
        on_result = core.on_result
        if budget is not None and budget.is_async:
            raise TypeError(
                f"budget {budget.name!r} is shared through a redis.asyncio client: it can guard "
                f"coroutine functions only, not {getattr(fn, '__qualname__', fn)!r}"
            )

        def loop(error: Exception | None, result: Any, args: Any, kwargs: Any) -> T:
            attempts = Attempts(core)
            while True:
                delay = attempts.after(error, result, remaining())
                if delay is not None and budget is not None:
                    delay = attempts.budget_answered(budget.try_spend())
                if delay is None:
                    if error is not None:
                        raise error
                    return result  # type: ignore[no-any-return]
                if delay > 0.0:
                    sleep(delay)
                try:
                    result, error = fn(*args, **kwargs), None
                except Exception as exc:
                    error = exc

        def retrying(*args: Any, **kwargs: Any) -> T:
            if budget is not None:
                budget.record_attempt()  # on the budget's own clock: it may be shared
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                error = exc
            else:
                if on_result is None or not on_result(result):
                    return result
                return loop(None, result, args, kwargs)
            # Retry outside the ``except`` block: later attempts' exceptions must not be chained
            # to this one (``__context__``), nor see it as the exception being handled.
            return loop(error, None, args, kwargs)

        return retrying

    def _wrap_async(self, fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        core, budget, sleep = self._core, self._budget, self._clock.sleep_async
        on_result = core.on_result
        shared_async = budget is not None and budget.is_async

        async def loop(error: Exception | None, result: Any, args: Any, kwargs: Any) -> T:
            attempts = Attempts(core)
            while True:
                delay = attempts.after(error, result, remaining())
                if delay is not None and budget is not None:
                    delay = attempts.budget_answered(await budget.try_spend_async())
                if delay is None:
                    if error is not None:
                        raise error
                    return result  # type: ignore[no-any-return]
                if delay > 0.0:
                    await sleep(delay)
                try:
                    result, error = await fn(*args, **kwargs), None
                except Exception as exc:
                    error = exc

        async def retrying(*args: Any, **kwargs: Any) -> T:
            if shared_async:
                await budget.record_attempt_async()  # type: ignore[union-attr]
            elif budget is not None:
                budget.record_attempt()  # on the budget's own clock: it may be shared
            try:
                result = await fn(*args, **kwargs)
            except Exception as exc:
                error = exc
            else:
                if on_result is None or not on_result(result):
                    return result
                return await loop(None, result, args, kwargs)
            return await loop(error, None, args, kwargs)  # outside ``except``: see the sync shell

        return retrying
