"""A one-shot wake-up a queued coroutine waits for, under asyncio or trio.

Queues of waiters (``Bulkhead``, ``AdaptiveConcurrency``) hand a slot over by calling the
waiter's wake-up, from whichever thread releases it; the waiter awaits it with a time limit.
``set`` is thread-safe and never raises; ``wait`` returns when set or when the limit has passed
(the caller then looks at whether it was handed a slot after all), and lets the waiting task's
own cancellation through.
"""

from __future__ import annotations

import asyncio
import math
from typing import Protocol

from resilience._clock import async_library

__all__ = ["AsyncWake", "async_wake"]


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
