"""The Clock protocol every policy reads time through, and the system clock.

Policies never call ``time`` or ``asyncio.sleep`` directly: they take ``clock=`` so tests (and
fleet simulations) can run on ``resilience.testing.FakeClock`` without waiting.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

__all__ = ["SYSTEM_CLOCK", "Cancellable", "Clock", "SystemClock"]


class Cancellable(Protocol):
    """A scheduled callback that can be called off (``asyncio.TimerHandle`` is one)."""

    def cancel(self) -> None: ...


class Clock(Protocol):
    """Monotonic time in float seconds, and ways to wait on it.

    ``call_later`` is only used from a running event loop (async timeouts schedule the
    cancellation of the current task with it).
    """

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...

    async def sleep_async(self, seconds: float) -> None: ...

    def call_later(self, seconds: float, callback: Callable[[], object]) -> Cancellable: ...


class SystemClock:
    """The real clock: ``time.monotonic``, ``time.sleep`` and the running event loop."""

    __slots__ = ()

    # A staticmethod so that ``clock.now`` is the builtin itself: no extra frame per call.
    now = staticmethod(time.monotonic)
    sleep = staticmethod(time.sleep)

    async def sleep_async(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def call_later(self, seconds: float, callback: Callable[[], object]) -> Cancellable:
        return asyncio.get_running_loop().call_later(seconds, callback)

    def __repr__(self) -> str:
        return "SystemClock()"


SYSTEM_CLOCK: Clock = SystemClock()
