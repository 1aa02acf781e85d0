"""Waiting in a queue: a one-shot wake-up for coroutines (asyncio or trio), and the time limit
of one wait on the policy's clock.

Queues of waiters (``Bulkhead``, ``AdaptiveConcurrency``) hand a slot over by calling the
waiter's wake-up, from whichever thread releases it; the waiter waits for it (a
``threading.Event``, or an ``AsyncWake``) with a time limit. ``set`` is thread-safe and never
raises; ``wait`` returns when set or when the limit has passed (the caller then looks at whether
it was handed a slot after all), and lets the waiting task's own cancellation through.

``TimeLimit`` is that limit, for all three kinds of waiter: on the system clock a timeout of the
wait itself, as always; on any other clock (a ``FakeClock``) a timer of that clock which sets
the wake-up, so the waiter wakes, finds no slot and gives up as timed out.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from types import TracebackType
from typing import Protocol

from resilience._clock import Cancellable, Clock, SystemClock, async_library

__all__ = ["AsyncWake", "Scope", "TimeLimit", "async_wake"]


class Scope(Protocol):
    """The enclosing deadline: it ends at ``at`` on ``clock`` (``_context.DeadlineScope``)."""

    @property
    def at(self) -> float: ...

    @property
    def clock(self) -> Clock: ...


class TimeLimit:
    """How long one queued call may wait, as a ``with`` block around the wait.

    The wait ends after ``max_wait`` seconds on the policy's ``clock`` (``None``: no limit of its
    own) and never past ``deadline``, the enclosing deadline (``None``: none), which is timed on
    the deadline's own clock: each limit runs on the clock it was set on, so a ``FakeClock``
    deadline ends the wait when that clock passes it, whatever clock the policy has.

    Entering returns the timeout for the wait itself (``Event.wait``, ``AsyncWake.wait``), in
    real seconds (``None``: none): the limits on the system clock, the smallest of them, with
    no timer (the path every wait on the system clock took before). A limit on any other clock
    is a ``clock.call_later`` timer that calls ``wake``: the waiter wakes and, not granted a
    slot, gives up as timed out (one granted at that moment keeps it). Leaving cancels the
    timers however the wait ended: granted, timed out, cancelled or interrupted. A limit
    already spent (the deadline has passed) is a timeout of ``0.0``: no wait, no timer.
    """

    __slots__ = ("_due", "_timers", "_wake", "timeout")

    def __init__(
        self,
        clock: Clock,
        max_wait: float | None,
        deadline: Scope | None,
        wake: Callable[[], object],
    ) -> None:
        self._wake = wake
        self._timers: list[Cancellable] | tuple[()] = ()
        due: list[tuple[Clock, float]] | None = None  # the timers to start on entry
        timeout: float | None = None
        if max_wait is not None:
            if isinstance(clock, SystemClock):
                timeout = max_wait
            else:
                due = [(clock, max_wait)]
        if deadline is not None:
            on = deadline.clock
            left = deadline.at - on.now()
            if left <= 0.0:
                due = None
                timeout = 0.0
            elif isinstance(on, SystemClock):
                timeout = left if timeout is None else min(timeout, left)
            elif due is None:
                due = [(on, left)]
            elif due[0][0] is on:  # one clock: one timer, for the sooner end
                due[0] = (on, min(due[0][1], left))
            else:
                due.append((on, left))
        self._due = due
        self.timeout = timeout

    def __enter__(self) -> float | None:
        if self._due is not None:
            wake = self._wake
            self._timers = [clock.call_later(seconds, wake) for clock, seconds in self._due]
        return self.timeout

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for timer in self._timers:
            timer.cancel()


class AsyncWake(Protocol):
    def set(self) -> None: ...

    async def wait(self, limit: float | None) -> None: ...


def async_wake() -> AsyncWake:
    """A wake-up for the current task, in the running library's primitives."""
    if async_library() == "asyncio":
        return _AsyncioWake()
    return _TrioWake()


class _AsyncioWake:
    """A future of the running loop, resolved through the loop's thread-safe scheduler."""

    __slots__ = ("_future", "_loop")

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._future: asyncio.Future[None] = self._loop.create_future()

    def set(self) -> None:
        try:
            self._loop.call_soon_threadsafe(self._resolve)
        except RuntimeError:  # the loop is closed: its waiter is gone
            pass

    def _resolve(self) -> None:
        if not self._future.done():
            self._future.set_result(None)

    async def wait(self, limit: float | None) -> None:
        # asyncio.wait neither cancels the future nor swallows a cancellation of ours (before
        # 3.12, asyncio.wait_for may swallow one that races the wake-up).
        await asyncio.wait((self._future,), timeout=None if limit is None else max(0.0, limit))


class _TrioWake:
    """A ``trio.Event`` (not thread-safe), set through the run's token."""

    __slots__ = ("_event", "_token")

    def __init__(self) -> None:
        import trio

        self._event = trio.Event()
        self._token = trio.lowlevel.current_trio_token()

    def set(self) -> None:
        try:
            self._token.run_sync_soon(self._event.set)
        except RuntimeError:  # trio.RunFinishedError: the run, and so its waiter, is over
            pass

    async def wait(self, limit: float | None) -> None:
        import trio

        with trio.move_on_after(math.inf if limit is None else max(0.0, limit)):
            await self._event.wait()
