"""Timeout and Deadline: a time budget published in context, enforced on coroutines.

Both publish "this must end by ``now + seconds``" (or keep an enclosing, earlier deadline) where
``resilience.remaining()``, ``Retry`` and the HTTP transports read it. On a coroutine the budget
is enforced: when it — or an enclosing, earlier deadline — runs out the coroutine is cancelled
and ``DeadlineExceededError`` raised; a cancellation from outside stays a ``CancelledError``.
On a plain function nothing is interrupted (threads cannot be killed safely): code that reads the
deadline obeys it, and a call that returns late still returns its result.

``Timeout`` is meant per attempt (inside ``Retry``), ``Deadline`` for the whole operation,
retries and sleeps included (outside ``Retry``). They differ in name and intent only.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from resilience import _events
from resilience._clock import SYSTEM_CLOCK, Clock
from resilience._context import enter_deadline, exit_deadline
from resilience._errors import DeadlineExceededError
from resilience._policy import Policy
from resilience._validate import check_duration

__all__ = ["Deadline", "Timeout", "exceeded"]

T = TypeVar("T")


class _TimeBudget(Policy):
    __slots__ = ("_clock", "name", "seconds")

    def __init__(self, seconds: float, *, clock: Clock | None = None, name: str | None = None):
        check_duration(seconds, "seconds", allow_zero=False)
        self.seconds = float(seconds)
        self._clock = clock or SYSTEM_CLOCK
        self.name = name or type(self).__name__.lower()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.seconds!r})"

    def _exceeded(self) -> DeadlineExceededError:
        return exceeded(self.name, type(self).__name__, self.seconds)

    def _wrap_sync(self, fn: Callable[..., T]) -> Callable[..., T]:
        seconds, clock = self.seconds, self._clock

        def bounded(*args: Any, **kwargs: Any) -> T:
            token, scope = enter_deadline(seconds, clock)
            try:
                if scope.remaining() <= 0.0:
                    raise self._exceeded()
                return fn(*args, **kwargs)
            finally:
                exit_deadline(token)

        return bounded

    def _wrap_async(self, fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        seconds, clock = self.seconds, self._clock

        async def bounded(*args: Any, **kwargs: Any) -> T:
            token, scope = enter_deadline(seconds, clock)
            try:
                left = scope.remaining()  # ours, or an enclosing deadline's if that ends sooner
                if left <= 0.0:
                    raise self._exceeded()
                task = asyncio.current_task()
                assert task is not None, "a coroutine runs in a task"
                loop = task.get_loop()
                cancelling = _cancelling(task)
                expired = False
                pending: asyncio.Handle | None = None

                def cancel() -> None:
                    nonlocal expired
                    expired = True
                    task.cancel()

                def expire() -> None:
                    # Cancel from the loop, not from here: the clock may fire inside the task's
                    # own step (a FakeClock advanced by the call), where task.cancel() would stay
                    # pending past a call that returns without awaiting again. And it may fire
                    # on another thread.
                    nonlocal pending
                    pending = loop.call_soon_threadsafe(cancel)

                timer = scope.clock.call_later(left, expire)
                try:
                    result = await fn(*args, **kwargs)
                except asyncio.CancelledError:
                    if not expired:
                        raise  # somebody else's cancellation: not ours to convert
                    if _uncancel(task) > cancelling:
                        raise  # cancelled from outside as well: that cancellation wins
                    raise self._exceeded() from None
                finally:
                    timer.cancel()
                    if pending is not None:
                        pending.cancel()
                if expired:
                    _uncancel(task)  # the call swallowed our cancellation and finished anyway
                return result
            finally:
                exit_deadline(token)

        return bounded


def exceeded(policy: str, kind: str, seconds: float) -> DeadlineExceededError:
    """The error for a time budget of ``seconds`` that ran out, announced as an event."""
    if _events.listeners:
        _events.emit(_events.DeadlineExceeded(policy, seconds))
    return DeadlineExceededError(kind, seconds)


if sys.version_info >= (3, 11):

    def _cancelling(task: asyncio.Task[Any]) -> int:
        return task.cancelling()

    def _uncancel(task: asyncio.Task[Any]) -> int:
        return task.uncancel()

else:  # no cancellation counts: an outer cancellation racing our own cannot be told apart

    def _cancelling(task: asyncio.Task[Any]) -> int:
        return 0

    def _uncancel(task: asyncio.Task[Any]) -> int:
        return 0


class Timeout(_TimeBudget):
    """Bound each call to ``seconds``: cancel a coroutine; publish the deadline to sync code.

    Raises ``DeadlineExceededError`` (a ``TimeoutError``) when a coroutine is cancelled for
    running out of time, or when the call starts with no time left. Put it inside ``Retry`` to
    bound each attempt.
    """

    __slots__ = ()


class Deadline(_TimeBudget):
    """Bound a whole operation — attempts, backoff sleeps, nested calls — to ``seconds``.

    Nested calls see the nearest deadline through ``resilience.remaining()``; ``Retry`` gives up
    rather than sleep past it. Coroutines are cancelled when it runs out
    (``DeadlineExceededError``); sync code is told, not interrupted.
    """

    __slots__ = ()
