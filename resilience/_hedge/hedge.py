"""Hedge: when a call is slow, send another copy; the first acceptable answer wins.

``delay`` is seconds, or a percentile of recent latencies (``"p95"``): then a ``TrackedRace``
(``resilience._hedge.tracked``) takes the delay from a ``LatencyPercentile`` and lets an extra
copy start only when the hedge budget grants it.

"The Tail at Scale" (Dean & Barroso): a second request after a short delay cuts the slowest
percentiles for a few percent more load. Only hedge operations that are safe to repeat.

The rules — when copies start, who wins, what is discarded — are ``race.Race``'s; the shells
here only start copies, arm timers, wait, and end what is left:

- coroutines run as tasks of the running library (asyncio tasks, or a trio nursery), timed by
  the clock's ``call_later``; losers are cancelled, and a value one returns anyway is discarded;
- plain functions run in threads, each in a copy of the caller's context (so deadlines carry
  over); losers are abandoned (threads cannot be killed) and their values discarded when they
  arrive. On the system clock the wait for an answer times itself; other clocks' ``call_later``
  (a ``FakeClock`` advanced by a test) ticks instead.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from resilience import _events
from resilience._adaptive.percentile import LatencyPercentile, parse_percentile
from resilience._clock import SYSTEM_CLOCK, Cancellable, Clock, SystemClock, async_library
from resilience._hedge.race import Item, Race
from resilience._hedge.tracked import TrackedRace
from resilience._policy import Policy
from resilience._retry.budget import RetryBudget
from resilience._validate import check_duration, check_positive_int

__all__ = ["Hedge"]

T = TypeVar("T")
_log = logging.getLogger("resilience")


class Hedge(Policy):
    """Send up to ``max_hedges`` extra copies of a slow call; return the first good answer.

    ``delay``: seconds without an answer before the next copy starts, or a percentile of this
    hedge's recent latencies, ``"p95"`` (``"pNN"`` / ``"pNN.N"``): over the last ``window``
    seconds (default 30), never below ``min_delay`` (default 1 ms), and no copies at all until
    ``warmup`` latencies (default 20) are in the window. Each copy is one sample: the winner's
    time, and a loser's time until the race was decided.

    ``budget``: a ``RetryBudget`` every extra copy must be granted (``ratio`` x first calls; a
    refused copy is not sent and the race goes on with the copies running), so a latency shift
    cannot multiply load. With a percentile delay and no ``budget``, the hedge keeps its own:
    ratio ``1 - q`` (5 % for "p95"), no floor, over ``window``. A fixed delay has none unless
    given one.

    ``on_result``: a predicate on a returned value meaning "not good enough, keep racing" (the
    transports pass retryable statuses). ``discard``: called once with every value that is not
    returned (the transports close losing responses). ``clock``: times the delay and the
    latencies. Thread-safe; one instance may guard many concurrent calls.
    """

    __slots__ = (
        "_budget",
        "_clock",
        "_discard",
        "_fixed",
        "_lock",
        "_on_result",
        "_settings",
        "_tracker",
        "delay",
        "max_hedges",
        "name",
    )

    def __init__(
        self,
        delay: float | str,
        max_hedges: int = 1,
        *,
        budget: RetryBudget | None = None,
        min_delay: float = 0.001,
        warmup: int = 20,
        window: float = 30.0,
        on_result: Callable[[Any], bool] | None = None,
        discard: Callable[[Any], object] | None = None,
        clock: Clock | None = None,
        name: str = "hedge",
    ) -> None:
        quantile: float | None = None
        if isinstance(delay, str):
            quantile = parse_percentile(delay, "delay")
        else:
            check_duration(delay, "delay")
        check_positive_int(max_hedges, "max_hedges")
        if budget is not None and not isinstance(budget, RetryBudget):
            raise TypeError(f"budget must be a RetryBudget or None, got {budget!r}")
        if budget is not None and budget.is_async:  # the race asks it without awaiting
            raise TypeError(
                "budget must answer without awaiting: a RetryBudget in memory or on a "
                f"synchronous RedisStore, got one on redis.asyncio ({budget!r})"
            )
        check_duration(min_delay, "min_delay")
        check_positive_int(warmup, "warmup", minimum=0)
        check_duration(window, "window", allow_zero=False)
        if on_result is not None and not callable(on_result):
            raise TypeError(f"on_result must be a predicate or None, got {on_result!r}")
        if discard is not None and not callable(discard):
            raise TypeError(f"discard must be callable or None, got {discard!r}")
        self._settings: dict[str, Any] = {
            "delay": delay,
            "max_hedges": max_hedges,
            "budget": budget,
            "min_delay": min_delay,
            "warmup": warmup,
            "window": window,
            "on_result": on_result,
            "discard": discard,
            "clock": clock,
            "name": name,
        }
        self.delay: float | str = delay if isinstance(delay, str) else float(delay)
        self._fixed = None if isinstance(delay, str) else float(delay)
        self.max_hedges = max_hedges
        self._on_result = on_result
        self._discard = discard
        self._clock = clock or SYSTEM_CLOCK
        self.name = name
        self._lock = threading.Lock()  # the tracker and the budget's bookkeeping
        self._tracker: LatencyPercentile | None = None
        self._budget = budget
        if quantile is not None:
            self._tracker = LatencyPercentile(
                quantile, window=window, warmup=warmup, floor=min_delay
            )
            if budget is None:
                self._budget = RetryBudget(
                    1.0 - quantile, 0.0, window, clock=self._clock, name=f"{name}-budget"
                )

    def __repr__(self) -> str:
        return f"Hedge({self.delay!r}, max_hedges={self.max_hedges!r})"

    def replace(self, **changes: Any) -> Hedge:
        """A new hedge with these settings bar ``changes`` (any constructor keyword); a
        percentile hedge starts with fresh latencies (and its own budget unless one is given)."""
        return Hedge(**{**self._settings, **changes})

    # -- what the race calls back ----------------------------------------------------------------

    def _accepts(self, result: object) -> bool:
        return self._on_result is None or not self._on_result(result)

    def _drop(self, result: object) -> None:
        if self._discard is not None:
            try:
                self._discard(result)
            except Exception:  # a loser's cleanup must not break the winner
                _log.exception("hedge %r: discarding a losing result failed", self.name)

    def _race(self) -> Race:
        """The race for one call: a fixed delay, or the tracked percentile's (a call made while
        it warms up is not hedged, but counted), with the budget asked before each extra copy."""
        tracker, budget, attempts = self._tracker, self._budget, self.max_hedges + 1
        if tracker is None:
            assert self._fixed is not None
            if budget is None:
                return Race(self._fixed, attempts, self._accepts, self._drop)
            delay = self._fixed
        else:
            with self._lock:
                tracked = tracker.value(self._clock.now())
            delay = 0.0 if tracked is None else tracked
            if tracked is None:
                attempts = 1
        return TrackedRace(
            delay,
            attempts,
            self._accepts,
            self._drop,
            record=None if tracker is None else self._record,
            budget=budget,
            now=self._clock.now,
        )

    def _record(self, latency: float, now: float) -> None:
        """One copy's latency, into the tracker (under the lock: races end on many threads)."""
        tracker = self._tracker
        assert tracker is not None
        with self._lock:
            tracker.add(latency, now)

    def _start(
        self,
        race: Race,
        spawn: Callable[[], None],
        arm: Callable[[float, int], None],
    ) -> None:
        """Start the next copy (``spawn``), announce it, and ``arm`` the timer for the one after
        it with its delay and the number of the copy it follows — armed first, so that a copy
        advancing a fake clock at once still sees its timer fire."""
        if isinstance(race, TrackedRace) and not race.may_launch():
            return  # the budget refused this copy
        delay = race.launch()
        if delay is not None:
            arm(delay, race.launched)
        if race.launched > 1 and _events.listeners:
            _events.emit(_events.HedgeSent(self.name, race.launched))
        spawn()

    # -- shells ----------------------------------------------------------------------------------

    def _wrap_async(self, fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        async def hedged(*args: Any, **kwargs: Any) -> T:
            if async_library() == "asyncio":
                return await self._run_asyncio(fn, args, kwargs)  # type: ignore[no-any-return]
            return await self._run_trio(fn, args, kwargs)  # type: ignore[no-any-return]

        return hedged

    async def _run_asyncio(
        self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        loop = asyncio.get_running_loop()
        race, timer = self._race(), _Timer()
        inbox = _Inbox(loop)
        running: dict[int, asyncio.Task[None]] = {}

        async def copy(number: int) -> None:
            try:
                outcome: Item = (True, await fn(*args, **kwargs))
            except BaseException as exc:
                outcome = (False, exc)
                if not isinstance(exc, Exception):  # a cancellation (ours, at the end), an exit
                    del running[number]
                    inbox.put(outcome)
                    raise
            del running[number]  # before the race hears of it: done, nothing to cancel
            inbox.put(outcome)

        def spawn() -> None:
            running[race.launched] = loop.create_task(copy(race.launched))

        def arm(delay: float, number: int) -> None:
            timer.set(
                self._clock.call_later(
                    delay, _threadsafe(loop.call_soon_threadsafe, inbox.put, number)
                )
            )

        try:
            self._start(race, spawn, arm)
            while not race.decided:
                if race.step(await inbox.get()):
                    self._start(race, spawn, arm)
        finally:
            race.abandon()  # no-op once decided
            timer.set(None)
            for task in running.values():
                task.cancel()
            if running:
                await asyncio.wait(running.values())
            for item in inbox.drain():
                race.late(item)
        return race.result()

    async def _run_trio(
        self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        import trio

        race, timer = self._race(), _Timer()
        send, inbox = trio.open_memory_channel[Item](math.inf)
        token = trio.lowlevel.current_trio_token()
        failure: Exception | None = None

        async def copy() -> None:
            try:
                outcome: Item = (True, await fn(*args, **kwargs))
            except Exception as exc:  # trio.Cancelled passes: the nursery takes it
                outcome = (False, exc)
            send.send_nowait(outcome)

        def arm(delay: float, number: int) -> None:
            tick = _threadsafe(token.run_sync_soon, send.send_nowait, number)
            timer.set(self._clock.call_later(delay, tick))

        async with trio.open_nursery() as nursery:
            spawn = _spawner(nursery.start_soon, copy)
            try:
                self._start(race, spawn, arm)
                while not race.decided:
                    if race.step(await inbox.receive()):
                        self._start(race, spawn, arm)
            except Exception as exc:  # raised past the nursery, not wrapped in a group by it
                failure = exc
            finally:
                race.abandon()
                timer.set(None)
                nursery.cancel_scope.cancel()
        while True:  # every copy has ended; what they sent after the decision is late
            try:
                race.late(inbox.receive_nowait())
            except trio.WouldBlock:
                break
        if failure is not None:
            raise failure
        return race.result()

    def _wrap_sync(self, fn: Callable[..., T]) -> Callable[..., T]:
        def hedged(*args: Any, **kwargs: Any) -> T:
            race, timer = self._race(), _Timer()
            inbox: queue.SimpleQueue[Item] = queue.SimpleQueue()
            lock = threading.Lock()  # orders a copy's hand-over against the end of the race
            ended = False
            due: tuple[float, int] | None = None  # on the system clock: the next tick

            def copy(context: contextvars.Context) -> None:
                try:
                    outcome: Item = (True, context.run(fn, *args, **kwargs))
                except BaseException as exc:
                    outcome = (False, exc)
                with lock:
                    if not ended:
                        inbox.put(outcome)
                        return
                race.late(outcome)

            def spawn() -> None:
                threading.Thread(
                    target=copy,
                    args=(contextvars.copy_context(),),
                    name=f"resilience-{self.name}-{race.launched}",
                    daemon=True,
                ).start()

            def arm(delay: float, number: int) -> None:
                nonlocal due
                if isinstance(self._clock, SystemClock):
                    due = (time.monotonic() + delay, number)
                else:
                    timer.set(self._clock.call_later(delay, functools.partial(inbox.put, number)))

            def next_item() -> Item:
                nonlocal due
                if due is None:
                    return inbox.get()
                try:
                    return inbox.get(timeout=max(0.0, due[0] - time.monotonic()))
                except queue.Empty:
                    number, due = due[1], None
                    return number

            try:
                self._start(race, spawn, arm)
                while not race.decided:
                    if race.step(next_item()):
                        self._start(race, spawn, arm)
            finally:
                race.abandon()
                timer.set(None)
                with lock:
                    ended = True
                    leftovers = []
                    while not inbox.empty():
                        leftovers.append(inbox.get_nowait())
                for item in leftovers:
                    race.late(item)
            return race.result()  # type: ignore[no-any-return]

        return hedged


class _Inbox:
    """What a race's copies and timers hand the asyncio shell, in order: an ``asyncio.Queue``
    without the bounds and bookkeeping this one waiter never needs."""

    __slots__ = ("_items", "_loop", "_waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._items: deque[Item] = deque()
        self._loop = loop
        self._waiter: asyncio.Future[None] | None = None

    def put(self, item: Item) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Item:
        while not self._items:
            self._waiter = self._loop.create_future()
            await self._waiter
        return self._items.popleft()

    def drain(self) -> list[Item]:
        items = list(self._items)
        self._items.clear()
        return items


class _Timer:
    """The one pending timer of a race: arming another calls the previous one off."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending: Cancellable | None = None

    def set(self, handle: Cancellable | None) -> None:
        if self._pending is not None:
            self._pending.cancel()
        self._pending = handle


def _threadsafe(
    hop: Callable[..., object], put: Callable[[Any], object], item: Any
) -> Callable[[], None]:
    """A timer callback that hands ``item`` to ``put`` through ``hop`` (a clock may fire its
    timers on any thread; the loop's thread-safe scheduler brings the tick home)."""

    def tick() -> None:
        try:
            hop(put, item)
        except RuntimeError:  # the loop or run is over: so is the race
            pass

    return tick


def _spawner(
    start_soon: Callable[..., object], copy: Callable[[], Awaitable[None]]
) -> Callable[[], None]:
    def spawn() -> None:
        start_soon(copy)

    return spawn
