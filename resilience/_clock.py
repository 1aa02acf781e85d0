"""The Clock protocol every policy reads time through, the system clock, and which async
library is running (asyncio or trio).

Policies never call ``time``, ``asyncio.sleep`` or ``trio.sleep`` directly: they take ``clock=``
so tests (and fleet simulations) can run on ``resilience.testing.FakeClock`` without waiting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

from sniffio import current_async_library_cvar as _sniffio_cvar
from sniffio import thread_local as _sniffio_thread

__all__ = ["SYSTEM_CLOCK", "Cancellable", "Clock", "SystemClock", "async_library", "check_clock"]

_log = logging.getLogger("resilience")


def async_library() -> str:
    """Name the async library running the current task: ``"asyncio"``, ``"trio"``, ...

    sniffio's answer, read the cheap way (two lookups, no import, no task query): trio names
    itself in sniffio's thread-local while it runs, trio-asyncio in sniffio's context variable;
    what names nothing is taken for asyncio, whose own calls fail as they always did when no loop
    runs. The async shells call it once per call to keep asyncio's path as fast as before.
    """
    return _sniffio_thread.name or _sniffio_cvar.get() or "asyncio"


class Cancellable(Protocol):
    """A scheduled callback that can be called off (``asyncio.TimerHandle`` is one)."""

    def cancel(self) -> None: ...


class Clock(Protocol):
    """Monotonic time in float seconds, and ways to wait on it.

    ``sleep_async`` works under asyncio and trio. ``call_later`` runs ``callback`` once
    ``seconds`` have passed on this clock; the callback may run on another thread, so whoever
    schedules one hops back into its own loop (async ``Timeout``/``Deadline`` cancel the current
    task with it, ``Hedge`` starts its next copy). ``SystemClock.call_later`` needs a running
    event loop (asyncio or trio); ``FakeClock``'s fires from ``advance``, loop or not.
    """

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...

    async def sleep_async(self, seconds: float) -> None: ...

    def call_later(self, seconds: float, callback: Callable[[], object]) -> Cancellable: ...


class SystemClock:
    """The real clock: ``time.monotonic``, ``time.sleep`` and the running event loop (asyncio
    or trio)."""

    __slots__ = ()

    # A staticmethod so that ``clock.now`` is the builtin itself: no extra frame per call.
    now = staticmethod(time.monotonic)
    sleep = staticmethod(time.sleep)

    async def sleep_async(self, seconds: float) -> None:
        if async_library() == "asyncio":
            await asyncio.sleep(seconds)
        else:
            import trio

            await trio.sleep(seconds)

    def call_later(self, seconds: float, callback: Callable[[], object]) -> Cancellable:
        if async_library() == "asyncio":
            return asyncio.get_running_loop().call_later(seconds, callback)
        return _TrioTimer(seconds, callback)

    def __repr__(self) -> str:
        return "SystemClock()"


class _TrioTimer:
    """``call_later`` under trio, which has none: a system task that sleeps, then calls back.

    Like an asyncio ``TimerHandle``, ``cancel`` belongs to the loop's thread; a failing callback
    is logged, never raised into the run (a system task's error would end it).
    """

    __slots__ = ("_scope",)

    def __init__(self, seconds: float, callback: Callable[[], object]) -> None:
        import trio

        self._scope = scope = trio.CancelScope()

        async def fire() -> None:
            with scope:
                await trio.sleep(seconds)
                try:
                    callback()
                except Exception:
                    _log.exception("a timer's callback failed")

        trio.lowlevel.spawn_system_task(fire)

    def cancel(self) -> None:
        self._scope.cancel()


SYSTEM_CLOCK: Clock = SystemClock()

_CLOCK_METHODS = ("now", "sleep", "sleep_async", "call_later")


def check_clock(clock: object, name: str = "clock") -> None:
    """Reject a ``clock=`` that is neither ``None`` nor a ``Clock`` (its four methods)."""
    if clock is not None and not all(callable(getattr(clock, m, None)) for m in _CLOCK_METHODS):
        raise TypeError(
            f"{name} must be a Clock (now, sleep, sleep_async, call_later) such as "
            f"resilience.testing.FakeClock(), or None for the system clock, got {clock!r}"
        )
