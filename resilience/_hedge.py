"""Hedge: when a call is slow, send another copy; the first acceptable answer wins.

"The Tail at Scale" (Dean & Barroso): a second request after a short delay cuts the slowest
percentiles for a few percent more load. Only hedge operations that are safe to repeat.

Rules:
- Attempt 1 starts at once; attempt k+1 starts ``delay`` seconds after attempt k, or at once
  when an attempt fails (no point waiting for a copy that already lost), up to ``1 + max_hedges``
  attempts in all.
- The first attempt to return a value not matching ``on_result`` wins. Failed attempts (an
  exception, or a result matching ``on_result``) do not win; if every attempt fails, the first
  exception is raised (or, when all returned, the last result is returned).
- Losers are cancelled (coroutines) or abandoned (threads, which cannot be killed); a loser's
  value that arrives anyway is passed to ``discard`` (the HTTP transport closes responses).

Coroutines run as tasks of the current loop, timed by the injected clock. Plain functions run in
threads (each with a copy of the caller's context, so deadlines carry over), timed by the real
clock.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import queue
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from resilience import _events
from resilience._clock import SYSTEM_CLOCK, Clock
from resilience._policy import Policy
from resilience._validate import check_duration, check_positive_int

__all__ = ["Hedge"]

T = TypeVar("T")
_log = logging.getLogger("resilience")
_MISSING: Any = object()


class Hedge(Policy):
    """Send up to ``max_hedges`` extra copies of a slow call; return the first good answer."""

    __slots__ = ("_clock", "_discard", "_on_result", "delay", "max_hedges", "name")

    def __init__(
        self,
        delay: float,
        max_hedges: int = 1,
        *,
        on_result: Callable[[Any], bool] | None = None,
        discard: Callable[[Any], object] | None = None,
        clock: Clock | None = None,
        name: str = "hedge",
    ) -> None:
        check_duration(delay, "delay")
        check_positive_int(max_hedges, "max_hedges")
        if on_result is not None and not callable(on_result):
            raise TypeError(f"on_result must be a predicate or None, got {on_result!r}")
        if discard is not None and not callable(discard):
            raise TypeError(f"discard must be callable or None, got {discard!r}")
        self.delay = float(delay)
        self.max_hedges = max_hedges
        self._on_result = on_result
        self._discard = discard
        self._clock = clock or SYSTEM_CLOCK
        self.name = name

    def __repr__(self) -> str:
        return f"Hedge({self.delay!r}, max_hedges={self.max_hedges!r})"

    def _accepts(self, result: object) -> bool:
        return self._on_result is None or not self._on_result(result)

    def _drop(self, result: object) -> None:
        if self._discard is not None and result is not _MISSING:
            try:
                self._discard(result)
            except Exception:  # a loser's cleanup must not break the winner
                _log.exception("hedge %r: discarding a losing result failed", self.name)

    def _sent(self, attempt: int) -> None:
        if _events.listeners:
            _events.emit(_events.HedgeSent(self.name, attempt))

    def _wrap_async(self, fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        async def hedged(*args: Any, **kwargs: Any) -> T:
            loop = asyncio.get_running_loop()
            running: set[asyncio.Future[Any]] = set()
            first_error: BaseException | None = None
            last_result: Any = _MISSING
            launched = 0
            timer: asyncio.Future[None] | None = None
            handle = None

            async def attempt() -> T:
                return await fn(*args, **kwargs)

            def launch() -> None:
                nonlocal launched, timer, handle
                launched += 1
                if launched > 1:
                    self._sent(launched)
                running.add(loop.create_task(attempt()))
                if handle is not None:
                    handle.cancel()
                timer = handle = None
                if launched <= self.max_hedges:
                    timer = loop.create_future()
                    handle = self._clock.call_later(self.delay, _resolver(timer))

            launch()
            try:
                while running:
                    waiting: set[asyncio.Future[Any]] = set(running)
                    if timer is not None:
                        waiting.add(timer)
                    done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                    lost = False
                    for future in done:
                        if future is timer:
                            continue
                        running.discard(future)
                        if future.cancelled():
                            lost = True
                            continue
                        error = future.exception()
                        if error is not None:
                            first_error = first_error or error
                            lost = True
                            continue
                        result = future.result()
                        if self._accepts(result):
                            self._drop(last_result)  # an earlier, unaccepted answer
                            return result  # type: ignore[no-any-return]
                        self._drop(last_result)
                        last_result, lost = result, True
                    fired = timer is not None and timer.done()
                    if (fired or lost) and launched <= self.max_hedges:
                        launch()
                if last_result is not _MISSING:
                    return last_result  # type: ignore[no-any-return]
                assert first_error is not None
                raise first_error
            finally:
                if handle is not None:
                    handle.cancel()
                for task in running:
                    task.cancel()
                if running:
                    outcomes = await asyncio.gather(*running, return_exceptions=True)
                    for outcome in outcomes:
                        if not isinstance(outcome, BaseException):
                            self._drop(outcome)

        return hedged

    def _wrap_sync(self, fn: Callable[..., T]) -> Callable[..., T]:
        def hedged(*args: Any, **kwargs: Any) -> T:
            answers: queue.SimpleQueue[tuple[bool, Any]] = queue.SimpleQueue()
            lock = threading.Lock()
            decided = False
            launched = 0

            def attempt(context: contextvars.Context) -> None:
                try:
                    answer: tuple[bool, Any] = (True, context.run(fn, *args, **kwargs))
                except BaseException as exc:
                    answer = (False, exc)
                with lock:
                    late = decided
                    if not late:
                        answers.put(answer)
                if late and answer[0]:
                    self._drop(answer[1])

            def launch() -> None:
                nonlocal launched
                launched += 1
                if launched > 1:
                    self._sent(launched)
                threading.Thread(
                    target=attempt,
                    args=(contextvars.copy_context(),),
                    name=f"resilience-{self.name}-{launched}",
                    daemon=True,
                ).start()

            outstanding = 0
            first_error: BaseException | None = None
            last_result: Any = _MISSING
            launch()
            outstanding += 1
            next_launch = self._clock.now() + self.delay
            try:
                while outstanding:
                    timeout = None
                    if launched <= self.max_hedges:
                        timeout = max(0.0, next_launch - self._clock.now())
                    try:
                        ok, value = answers.get(timeout=timeout)
                    except queue.Empty:
                        launch()
                        outstanding += 1
                        next_launch = self._clock.now() + self.delay
                        continue
                    outstanding -= 1
                    if ok and self._accepts(value):
                        self._drop(last_result)  # an earlier, unaccepted answer
                        return value  # type: ignore[no-any-return]
                    if ok:
                        self._drop(last_result)
                        last_result = value
                    elif first_error is None:
                        first_error = value
                    if launched <= self.max_hedges:
                        launch()
                        outstanding += 1
                        next_launch = self._clock.now() + self.delay
                if last_result is not _MISSING:
                    return last_result  # type: ignore[no-any-return]
                assert first_error is not None
                raise first_error
            finally:
                with lock:
                    decided = True
                    leftovers = []
                    while True:
                        try:
                            leftovers.append(answers.get_nowait())
                        except queue.Empty:
                            break
                for ok, value in leftovers:
                    if ok:
                        self._drop(value)

        return hedged


def _resolver(future: asyncio.Future[None]) -> Callable[[], None]:
    def resolve() -> None:
        if not future.done():
            future.set_result(None)

    return resolve
