"""Timeout and Deadline: a time budget published in context, enforced on coroutines.

Both publish "this must end by ``now + seconds``" (or keep an enclosing, earlier deadline) where
``resilience.remaining()``, ``Retry`` and the HTTP transports read it. On a coroutine the budget
is enforced, under asyncio and trio alike: when it — or an enclosing, earlier deadline — runs out
the coroutine is cancelled and ``DeadlineExceededError`` raised; a cancellation from outside
stays a cancellation. On a plain function nothing is interrupted (threads cannot be killed
safely): code that reads the deadline obeys it, and a call that returns late still returns its
result.

Each is a decorator, a ``Pipeline`` step and a context manager with the same rules:
``with Deadline(2.0):`` publishes and refuses to start with no time left (as the sync shell
does); ``async with Timeout(1.0):`` also cancels its body when the time runs out. State of an
open block lives in a context variable, so one instance may be entered by many threads and tasks
at once.

``Timeout`` is meant per attempt (inside ``Retry``), ``Deadline`` for the whole operation,
retries and sleeps included (outside ``Retry``). They differ in name and intent only.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Awaitable, Callable
from contextvars import ContextVar, Token
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from resilience import _events
from resilience._clock import SYSTEM_CLOCK, Cancellable, Clock, SystemClock
from resilience._context import DeadlineScope, enter_deadline, exit_deadline
from resilience._errors import DeadlineExceededError
from resilience._policy import Policy
from resilience._validate import check_duration

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["Deadline", "Timeout", "exceeded"]

T = TypeVar("T")
_DeadlineToken = Token[DeadlineScope | None] | None


class _Open:
    """One entered ``with``/``async with`` block: what its exit must undo."""

    __slots__ = ("guard", "outer", "token")

    def __init__(self, token: _DeadlineToken, guard: Guard | None, outer: _Open | None) -> None:
        self.token = token
        self.guard = guard
        self.outer = outer


# The innermost open block of this thread or task; each links to the one it is nested in.
_innermost: ContextVar[_Open | None] = ContextVar("resilience_open_budget", default=None)


class _TimeBudget(Policy):
    __slots__ = ("_clock", "_settings", "name", "seconds")

    def __init__(self, seconds: float, *, clock: Clock | None = None, name: str | None = None):
        check_duration(seconds, "seconds", allow_zero=False)
        self.seconds = float(seconds)
        self._clock = clock or SYSTEM_CLOCK
        self.name = name or type(self).__name__.lower()
        self._settings: dict[str, Any] = {"seconds": seconds, "clock": clock, "name": self.name}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.seconds!r})"

    def replace(self, **changes: Any) -> Self:
        """A new ``Timeout`` (or ``Deadline``) with these settings bar ``changes`` (any
        constructor keyword)."""
        return type(self)(**{**self._settings, **changes})

    def _exceeded(self) -> DeadlineExceededError:
        return exceeded(self.name, type(self).__name__, self.seconds)

    def _enter(self) -> tuple[_DeadlineToken, float, Clock]:
        """Publish the deadline; return its token, the seconds left and the clock in force
        (ours, or an enclosing deadline's if that ends sooner). No time left: nothing stays
        published and ``DeadlineExceededError`` is raised."""
        token, scope = enter_deadline(self.seconds, self._clock)
        left = scope.remaining()
        if left <= 0.0:
            exit_deadline(token)
            raise self._exceeded()
        return token, left, scope.clock

    # -- decorator shells ----------------------------------------------------------------------

    def _wrap_sync(self, fn: Callable[..., T]) -> Callable[..., T]:
        seconds, clock = self.seconds, self._clock

        def bounded(*args: Any, **kwargs: Any) -> T:
            token, scope = enter_deadline(seconds, clock)  # self._enter(), inlined: per call
            try:
                if scope.remaining() <= 0.0:
                    raise self._exceeded()
                return fn(*args, **kwargs)
            finally:
                exit_deadline(token)

        return bounded

    def _wrap_async(self, fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        seconds, clock = self.seconds, self._clock
        current_task = asyncio.current_task

        async def bounded(*args: Any, **kwargs: Any) -> T:
            token, scope = enter_deadline(seconds, clock)
            try:
                left = scope.remaining()  # ours, or an enclosing deadline's if that ends sooner
                if left <= 0.0:
                    raise self._exceeded()
                try:  # guard(), inlined: this is every async call's path
                    task = current_task()
                except RuntimeError:
                    task = None
                cancel: Guard
                if task is not None:
                    cancel = _AsyncioGuard(task, left, scope.clock)
                else:
                    cancel = _TrioGuard(left, scope.clock)
                try:
                    result = await fn(*args, **kwargs)
                except BaseException as error:
                    if cancel.close(error):
                        raise self._exceeded() from None
                    raise
                cancel.close(None)
                return result
            finally:
                exit_deadline(token)

        return bounded

    # -- context managers ----------------------------------------------------------------------

    def __enter__(self) -> None:
        """Publish the deadline for the block; nothing interrupts it (see the module's notes).

        Raises ``DeadlineExceededError`` without running the block when no time is left.
        """
        token = self._enter()[0]
        _innermost.set(_Open(token, None, _innermost.get()))

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        exit_deadline(_close_innermost().token)

    async def __aenter__(self) -> None:
        """Publish the deadline for the block and cancel the block when it runs out (asyncio or
        trio); the block then ends in ``DeadlineExceededError``."""
        token, left, clock = self._enter()
        try:
            cancel = guard(left, clock)
        except BaseException:
            exit_deadline(token)
            raise
        _innermost.set(_Open(token, cancel, _innermost.get()))

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        block = _close_innermost()
        try:
            assert block.guard is not None, "async with closes what async with opened"
            if block.guard.close(error):
                raise self._exceeded() from None
        finally:
            exit_deadline(block.token)


def _close_innermost() -> _Open:
    block = _innermost.get()
    if block is None:
        raise RuntimeError("a Timeout or Deadline block was exited without being entered")
    _innermost.set(block.outer)
    return block


# -- cancelling the current task when the time runs out ------------------------------------------


class Guard(Protocol):
    """Cancels the current task when its time runs out, under one async library."""

    def close(self, error: BaseException | None) -> bool:
        """Stop watching; return whether ``error`` is this guard's own cancellation (to be
        raised as ``DeadlineExceededError``; any other outcome goes on as it is)."""
        ...


def guard(left: float, clock: Clock) -> Guard:
    """Watch the current task for ``left`` seconds on ``clock``, under asyncio or trio."""
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no asyncio loop in this thread: trio
        task = None
    if task is not None:
        return _AsyncioGuard(task, left, clock)
    return _TrioGuard(left, clock)  # or trio as a guest of an asyncio loop


class _AsyncioGuard:
    """Cancels an asyncio task with ``task.cancel()`` from a timer on the clock.

    The cancellation is made from the loop, not from the timer: the clock may fire inside the
    task's own step (a ``FakeClock`` advanced by the call), where ``task.cancel()`` would stay
    pending past a call that returns without awaiting again; and it may fire on another thread.
    Cancellation counts (3.11+) tell a cancellation from outside, racing ours, which then wins.
    """

    __slots__ = ("_cancelling", "_expired", "_pending", "_task", "_timer")

    def __init__(self, task: asyncio.Task[Any], left: float, clock: Clock) -> None:
        self._task = task
        self._cancelling = _cancelling(task)
        self._expired = False
        self._pending: asyncio.Handle | None = None
        self._timer = clock.call_later(left, self._expire)

    def _expire(self) -> None:
        self._pending = self._task.get_loop().call_soon_threadsafe(self._cancel)

    def _cancel(self) -> None:
        self._expired = True
        self._task.cancel()

    def close(self, error: BaseException | None) -> bool:
        self._timer.cancel()
        if self._pending is not None:
            self._pending.cancel()
        if not self._expired:
            return False  # a cancellation, if any, is somebody else's
        if not isinstance(error, asyncio.CancelledError):
            _uncancel(self._task)  # the call swallowed our cancellation and ended anyway
            return False
        return _uncancel(self._task) <= self._cancelling  # else cancelled from outside as well


class _TrioGuard:
    """Cancels a trio task through a cancel scope: a deadline in trio's time on the system
    clock; on another clock, a timer that cancels the scope (at once on the run's thread, where
    a cancelled scope only takes effect at the next checkpoint inside it; from another thread,
    through the run's token).

    Trio's scopes catch only their own cancellation, and let it through when an enclosing scope
    was cancelled too: a cancellation from outside wins without counting.
    """

    __slots__ = ("_home", "_scope", "_timer", "_token")

    def __init__(self, left: float, clock: Clock) -> None:
        import trio

        self._scope = trio.CancelScope()
        self._timer: Cancellable | None = None
        if isinstance(clock, SystemClock):
            self._scope.deadline = trio.current_time() + left
        else:
            self._token = trio.lowlevel.current_trio_token()
            self._home = threading.get_ident()
            self._timer = clock.call_later(left, self._expire)
        self._scope.__enter__()

    def _expire(self) -> None:
        if threading.get_ident() == self._home:
            self._scope.cancel()
            return
        try:
            self._token.run_sync_soon(self._scope.cancel)
        except RuntimeError:  # trio.RunFinishedError: the run, and so the task, is over
            pass

    def close(self, error: BaseException | None) -> bool:
        if self._timer is not None:
            self._timer.cancel()
        if error is None:
            self._scope.__exit__(None, None, None)  # answers True: "nothing left to raise"
            return False
        # May raise instead: a group of errors, less the cancellations this scope caught.
        return self._scope.__exit__(type(error), error, error.__traceback__)


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


def exceeded(policy: str, kind: str, seconds: float) -> DeadlineExceededError:
    """The error for a time budget of ``seconds`` that ran out, announced as an event."""
    if _events.listeners:
        _events.emit(_events.DeadlineExceeded(policy, seconds))
    return DeadlineExceededError(kind, seconds)


class Timeout(_TimeBudget):
    """Bound each call to ``seconds``: cancel a coroutine; publish the deadline to sync code.

    Raises ``DeadlineExceededError`` (a ``TimeoutError``) when a coroutine is cancelled for
    running out of time, or when the call starts with no time left. Put it inside ``Retry`` to
    bound each attempt. Also a context manager: ``async with Timeout(1.0):`` cancels the block;
    ``with Timeout(1.0):`` publishes only.
    """

    __slots__ = ()


class Deadline(_TimeBudget):
    """Bound a whole operation — attempts, backoff sleeps, nested calls — to ``seconds``.

    Nested calls see the nearest deadline through ``resilience.remaining()``; ``Retry`` gives up
    rather than sleep past it. Coroutines are cancelled when it runs out
    (``DeadlineExceededError``); sync code is told, not interrupted. Also a context manager:
    ``with Deadline(2.0):`` / ``async with Deadline(2.0):``.
    """

    __slots__ = ()
