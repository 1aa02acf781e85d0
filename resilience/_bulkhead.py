"""Bulkhead: at most ``max_concurrent`` calls at once, with a bounded, time-limited queue.

Permits are tokens in a list: taking one is a single atomic ``list.pop()`` and returning one a
single ``list.append()``, so the uncontended path takes no lock. The FIFO of waiters lives under
a lock; while anyone waits, newcomers queue behind them instead of taking freed tokens, and a
returned token is dispatched to the oldest waiter.
Sync callers wait on a ``threading.Event``; async callers on a future of their own asyncio loop
or a ``trio.Event``; all kinds can share one bulkhead. A wait's time limit is ``_wake.TimeLimit``
(a timeout of the wait on the system clock, a timer of the clock on any other). A waiter that
gives up (time out, cancellation) after it was handed a permit passes the permit on, so none is
ever lost.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from resilience import _events
from resilience._clock import SYSTEM_CLOCK, Clock, check_clock
from resilience._context import current_deadline
from resilience._errors import BulkheadFullError
from resilience._policy import Policy
from resilience._validate import check_positive_int, check_queue
from resilience._wake import TimeLimit, async_wake

__all__ = ["Bulkhead"]

T = TypeVar("T")


class _Waiter:
    __slots__ = ("granted", "wake")

    def __init__(self, wake: Callable[[], None]) -> None:
        self.granted = False
        self.wake = wake


class Bulkhead(Policy):
    """Limit concurrent calls to ``max_concurrent``; queue up to ``max_waiting`` more.

    A call that finds every permit taken waits in a FIFO queue when there is room in it, for at
    most ``max_wait`` seconds on ``clock`` (``None``: no limit of its own) and never past the
    enclosing deadline, timed on that deadline's own clock; otherwise — or when the wait runs
    out — it raises ``BulkheadFullError``. With the defaults (``max_waiting=0``) a full bulkhead
    rejects at once. Permits are released on every path: return, exception, ``BaseException``
    and cancellation (asyncio or trio).

    ``clock`` (default: the system clock) times the queue waits: on a ``FakeClock`` a queued
    call is refused when the clock is advanced past ``max_wait``, never before, and never by
    real time passing. Thread-safe, and safe to share between threads and event loops.
    """

    __slots__ = (
        "_clock",
        "_lock",
        "_tokens",
        "_waiters",
        "max_concurrent",
        "max_wait",
        "max_waiting",
        "name",
    )

    def __init__(
        self,
        max_concurrent: int,
        *,
        max_waiting: int = 0,
        max_wait: float | None = 0.0,
        name: str = "bulkhead",
        clock: Clock | None = None,
    ) -> None:
        check_positive_int(max_concurrent, "max_concurrent")
        check_queue(max_waiting, max_wait)
        check_clock(clock)
        self.max_concurrent = max_concurrent
        self.max_waiting = max_waiting
        self.max_wait = max_wait
        self.name = name
        self._clock = clock or SYSTEM_CLOCK
        self._tokens = [True] * max_concurrent
        self._waiters: deque[_Waiter] = deque()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"Bulkhead({self.max_concurrent!r}, max_waiting={self.max_waiting!r}, "
            f"max_wait={self.max_wait!r})"
        )

    def replace(self, **changes: Any) -> Bulkhead:
        """A new bulkhead with these settings bar ``changes`` (any constructor keyword)."""
        settings: dict[str, Any] = {
            "max_concurrent": self.max_concurrent,
            "max_waiting": self.max_waiting,
            "max_wait": self.max_wait,
            "name": self.name,
            "clock": self._clock,
        }
        return Bulkhead(**{**settings, **changes})

    @property
    def clock(self) -> Clock:
        """The clock queue waits are timed on."""
        return self._clock

    @property
    def active(self) -> int:
        """Permits currently held."""
        return self.max_concurrent - len(self._tokens)

    @property
    def waiting(self) -> int:
        """Calls currently queued for a permit."""
        return len(self._waiters)

    # -- core: O(1) bookkeeping under the lock -----------------------------------------------

    def _try_acquire(self) -> bool:
        """Take a free permit if there is one and nobody is queued ahead (lock-free)."""
        if self._waiters:
            return False
        try:
            self._tokens.pop()
        except IndexError:
            return False
        return True

    def _enqueue(self, waiter: _Waiter) -> bool | None:
        """Queue ``waiter`` and dispatch: granted at once (``True``), queued (``None``), or
        refused (``False``) when the queue is full."""
        with self._lock:
            waiters = self._waiters
            if len(waiters) >= self.max_waiting and not self._tokens:
                return False
            waiters.append(waiter)
            woken = self._dispatch_locked()
            # Decided under the lock: read outside it, the length may include a newcomer that
            # is about to be refused, and an older waiter would give up its place for it.
            refused = not waiter.granted and len(waiters) > self.max_waiting
            if refused:
                waiters.pop()  # the newest, so ours: the queue was full after all
        for other in woken:
            if other is not waiter:
                other.wake()
        if waiter.granted:
            return True
        return False if refused else None

    def _release(self) -> None:
        """Return a permit; if anyone waits, hand it to the oldest waiter."""
        self._tokens.append(True)
        if self._waiters:
            with self._lock:
                woken = self._dispatch_locked()
            for waiter in woken:
                waiter.wake()

    def _dispatch_locked(self) -> list[_Waiter]:
        """Give free tokens to waiters in arrival order; return the ones to wake."""
        woken = []
        waiters, tokens = self._waiters, self._tokens
        while waiters:
            try:
                tokens.pop()
            except IndexError:
                break
            waiter = waiters.popleft()
            waiter.granted = True
            woken.append(waiter)
        return woken

    def _abandon(self, waiter: _Waiter) -> bool:
        """A waiter stops waiting; return whether it holds a permit after all."""
        with self._lock:
            if waiter.granted:
                return True
            self._waiters.remove(waiter)
            return False

    def _rejected(self) -> BulkheadFullError:
        if _events.listeners:
            _events.emit(_events.BulkheadRejected(self.name, self.max_concurrent))
        return BulkheadFullError(self.name, self.max_concurrent)

    # -- shells --------------------------------------------------------------------------------

    @contextmanager
    def _queued(self, wake: Callable[[], None]) -> Iterator[bool]:
        """Queue a waiter woken by ``wake``; say whether the caller must wait (``False``: a
        permit was free at once). When the block ends, the waiter keeps a permit it was handed,
        even as its wait runs out; interrupted, it passes one on; not granted, it is rejected.
        ``BulkheadFullError`` at once when the queue is full."""
        waiter = _Waiter(wake)
        queued = self._enqueue(waiter)
        if queued is False:
            raise self._rejected()
        if queued:
            yield False
            return
        try:
            yield True
        except BaseException:
            if self._abandon(waiter):
                self._release()  # granted while we were interrupted: pass it on
            raise
        if not self._abandon(waiter):
            raise self._rejected()

    def _wait_sync(self) -> None:
        """The slow path: queue and wait for a permit, or raise ``BulkheadFullError``."""
        event = threading.Event()
        with self._queued(event.set) as must_wait:
            if must_wait:
                with TimeLimit(self._clock, self.max_wait, current_deadline(), event.set) as limit:
                    event.wait(limit)

    async def _wait_async(self) -> None:
        """The slow path for coroutines, under asyncio or trio."""
        wake = async_wake()
        with self._queued(wake.set) as must_wait:
            if must_wait:
                with TimeLimit(self._clock, self.max_wait, current_deadline(), wake.set) as limit:
                    await wake.wait(limit)

    def _wrap_sync(self, fn: Callable[..., T]) -> Callable[..., T]:
        try_acquire, wait, release = self._try_acquire, self._wait_sync, self._release

        def bounded(*args: Any, **kwargs: Any) -> T:
            if not try_acquire():
                wait()
            try:
                return fn(*args, **kwargs)
            finally:
                release()

        return bounded

    def _wrap_async(self, fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        try_acquire, wait, release = self._try_acquire, self._wait_async, self._release

        async def bounded(*args: Any, **kwargs: Any) -> T:
            if not try_acquire():
                await wait()
            try:
                return await fn(*args, **kwargs)
            finally:
                release()

        return bounded
