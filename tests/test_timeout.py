"""Timeout and Deadline: published in context, enforced on coroutines, never killing threads."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
import trio

from resilience import (
    Backoff,
    Deadline,
    DeadlineExceeded,
    DeadlineExceededError,
    Pipeline,
    Retry,
    Timeout,
    remaining,
)
from resilience.testing import EventRecorder, FakeClock
from tests.conftest import Colour

# Cancellation counts (Task.cancelling/uncancel) are new in Python 3.11: before, a cancellation
# from outside that races our own cannot be told apart.
needs_cancellation_counts = pytest.mark.skipif(
    sys.version_info < (3, 11), reason="Task.cancelling() is new in Python 3.11"
)

# -- coroutines: enforced, under asyncio and trio ------------------------------------------------


def test_a_slow_coroutine_is_cancelled(async_colour: Colour, clock: FakeClock) -> None:
    """A coroutine outliving its Timeout is cancelled; DeadlineExceededError (a TimeoutError)."""
    reached_end = False

    @Timeout(1.0, clock=clock, name="charge")
    async def slow() -> str:
        nonlocal reached_end
        await clock.sleep_async(5.0)
        reached_end = True
        return "late"

    with EventRecorder() as recorder, pytest.raises(DeadlineExceededError) as caught:
        async_colour.run(slow)
    assert isinstance(caught.value, TimeoutError)
    assert (caught.value.name, caught.value.timeout) == ("Timeout", 1.0)
    assert not reached_end
    assert [(event.policy, event.timeout) for event in recorder.of(DeadlineExceeded)] == [
        ("charge", 1.0)
    ]


def test_a_slow_coroutine_is_cancelled_on_the_system_clock(async_colour: Colour) -> None:
    """On the real clock the cancellation comes from the running library's own timer (a
    never-answering wait; the bound is short so that the test stays quick)."""

    @Timeout(0.01)
    async def never() -> None:
        await anyio.Event().wait()

    with pytest.raises(DeadlineExceededError):
        async_colour.run(never)


def test_a_fast_coroutine_returns_and_leaves_no_stray_cancellation(
    async_colour: Colour, clock: FakeClock
) -> None:
    """A coroutine finishing in time returns its value; its timer is cancelled."""

    @Timeout(1.0, clock=clock)
    async def fast() -> str:
        await clock.sleep_async(0.5)
        return "ok"

    async def scenario() -> str:
        value = await fast()
        clock.advance(10.0)  # the timer would have fired by now
        await async_colour.checkpoint()  # a stray cancellation would land here
        await async_colour.checkpoint()
        return value

    with EventRecorder() as recorder:
        assert async_colour.run(scenario) == "ok"
    assert recorder.of(DeadlineExceeded) == []


def test_a_coroutine_overrunning_without_awaiting_leaves_no_stray_cancellation(
    async_colour: Colour, clock: FakeClock
) -> None:
    """When the time runs out inside a step that then returns, the call's value comes back and
    the task goes on awaiting undisturbed."""

    @Timeout(1.0, clock=clock)
    async def overruns() -> str:
        clock.advance(5.0)  # the timer falls due here, but nothing is awaited after it
        return "finished anyway"

    async def scenario() -> str:
        value = await overruns()
        await async_colour.checkpoint()  # a stray cancellation would land here
        await async_colour.checkpoint()
        return value

    assert async_colour.run(scenario) == "finished anyway"
    assert async_colour.run(overruns) == "finished anyway"  # and as the task's whole body


@needs_cancellation_counts
def test_a_coroutine_swallowing_the_cancellation_returns_its_value(clock: FakeClock) -> None:
    """A coroutine that catches the cancellation and returns keeps its value; the task is left
    with no pending cancellation (asyncio: trio's cancellations are not left pending)."""

    @Timeout(1.0, clock=clock)
    async def stubborn() -> str:
        try:
            await clock.sleep_async(5.0)
        except asyncio.CancelledError:
            return "swallowed"
        return "not cancelled"

    async def scenario() -> tuple[str, int]:
        value = await stubborn()
        await asyncio.sleep(0)
        task = asyncio.current_task()
        assert task is not None
        return value, task.cancelling()

    assert asyncio.run(scenario()) == ("swallowed", 0)


def test_a_trio_coroutine_swallowing_the_cancellation_returns_its_value(clock: FakeClock) -> None:
    """trio: a coroutine that catches the cancellation and returns keeps its value, and the
    task awaits on undisturbed once the Timeout's scope is closed."""

    @Timeout(1.0, clock=clock)
    async def stubborn() -> str:
        try:
            await clock.sleep_async(5.0)
        except trio.Cancelled:
            return "swallowed"
        return "not cancelled"

    async def scenario() -> str:
        value = await stubborn()
        await trio.lowlevel.checkpoint()  # a cancellation left behind would land here
        return value

    assert trio.run(scenario) == "swallowed"


def test_an_outer_cancellation_is_not_turned_into_a_timeout(
    async_colour: Colour, clock: FakeClock
) -> None:
    """Cancelling the call from outside ends it as a cancellation, not DeadlineExceededError."""
    ended: list[str] = []

    @Timeout(10.0, clock=clock)
    async def waits() -> None:
        try:
            await anyio.Event().wait()
        finally:
            ended.append("cancelled")

    async def scenario() -> None:
        with anyio.CancelScope() as outside:
            async with anyio.create_task_group() as group:
                group.start_soon(waits)
                await async_colour.checkpoint()
                outside.cancel()
        assert outside.cancelled_caught

    with EventRecorder() as recorder:
        async_colour.run(scenario)
    assert ended == ["cancelled"]
    assert recorder.of(DeadlineExceeded) == []


def test_an_outer_cancellation_racing_the_timeout_stays_a_cancellation(clock: FakeClock) -> None:
    """trio: when the call is cancelled from outside as its time runs out, the cancellation
    wins. (asyncio: the next test. An anyio scope on asyncio, cancelled in the same loop step as
    the timeout fires, loses its cancel message to the timeout's ``task.cancel()`` and does not
    recognise its cancellation; ``asyncio.timeout`` does the same.)"""

    async def scenario() -> None:
        with trio.CancelScope() as outside:

            @Timeout(1.0, clock=clock)
            async def slow() -> None:
                outside.cancel()  # from outside, as far as the Timeout knows
                await clock.sleep_async(5.0)  # ...and the Timeout's own time runs out too

            await slow()
        assert outside.cancelled_caught  # not a DeadlineExceededError: it never got here

    with EventRecorder() as recorder:
        trio.run(scenario)
    assert recorder.of(DeadlineExceeded) == []


@needs_cancellation_counts
def test_an_outer_asyncio_cancellation_stays_counted(clock: FakeClock) -> None:
    """asyncio: when the task is cancelled from outside as the time runs out, CancelledError
    wins and the task still counts the outer request."""

    @Timeout(1.0, clock=clock)
    async def slow() -> None:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()  # from outside, as far as the Timeout knows
        await clock.sleep_async(5.0)  # ...and the Timeout's own time runs out too

    async def scenario() -> int:
        with pytest.raises(asyncio.CancelledError):
            await slow()
        task = asyncio.current_task()
        assert task is not None
        return task.cancelling()

    assert asyncio.run(scenario()) == 1  # the outer request is still counted


def test_an_enclosing_deadline_ends_an_inner_longer_timeout(
    async_colour: Colour, clock: FakeClock
) -> None:
    """Deadline(1) around Timeout(5): the coroutine is cancelled at 1 s, reported by the
    Deadline, and the inner code saw at most 1 s left."""
    if async_colour.name == "asyncio" and sys.version_info < (3, 11):
        pytest.skip("Task.cancelling() is new in Python 3.11")
    seen: list[float | None] = []

    @Timeout(5.0, clock=clock)
    async def inner() -> str:
        seen.append(remaining())
        await clock.sleep_async(10.0)  # past both ends: both fire, the outer one is reported
        return "late"

    @Deadline(1.0, clock=clock)
    async def outer() -> str:
        return await inner()

    with pytest.raises(DeadlineExceededError) as caught:
        async_colour.run(outer)
    assert (caught.value.name, caught.value.timeout) == ("Deadline", 1.0)
    assert seen == [1.0]


def test_a_deadline_published_by_sync_code_is_enforced_on_coroutines(
    async_colour: Colour, clock: FakeClock
) -> None:
    """A coroutine run under a sync Deadline is cancelled by an inner Timeout when the
    enclosing, earlier deadline runs out."""
    reached_end = False

    @Timeout(5.0, clock=clock)
    async def inner() -> str:
        nonlocal reached_end
        await clock.sleep_async(3.0)
        reached_end = True
        return "late"

    @Deadline(1.0, clock=clock)
    def outer() -> str:
        return str(async_colour.run(inner))

    with pytest.raises(DeadlineExceededError):
        outer()
    assert not reached_end


# -- the published deadline --------------------------------------------------------------------


def test_remaining_reflects_the_nearest_deadline(colour: Colour, clock: FakeClock) -> None:
    """Inside nested scopes remaining() is the earliest end and falls as time passes; outside it
    is None."""
    seen: list[float | None] = []

    def body() -> str:
        seen.append(remaining())
        clock.advance(0.25)
        seen.append(remaining())
        return "done"

    policy = Pipeline(Deadline(1.0, clock=clock), Timeout(5.0, clock=clock))
    assert remaining() is None
    assert colour.wrap(policy, body)() == "done"
    assert seen == [1.0, 0.75]
    assert remaining() is None


def test_an_inner_shorter_timeout_wins(colour: Colour, clock: FakeClock) -> None:
    """A Timeout shorter than the enclosing Deadline is the one remaining() reports."""
    seen: list[float | None] = []
    policy = Pipeline(Deadline(5.0, clock=clock), Timeout(2.0, clock=clock))
    colour.wrap(policy, lambda: seen.append(remaining()))()
    assert seen == [2.0]


def test_remaining_is_never_negative(clock: FakeClock) -> None:
    """Once the deadline has passed, remaining() reads 0.0."""
    seen: list[float | None] = []

    @Timeout(1.0, clock=clock)
    def late() -> None:
        clock.advance(0.5)
        seen.append(remaining())
        clock.advance(3.0)
        seen.append(remaining())

    late()
    assert seen == [0.5, 0.0]


def run_nested(colour: Colour, clock: FakeClock, fail: bool) -> list[float | None]:
    """Under Deadline(10), call a Timeout(1)-guarded function (failing or not) after 2 s;
    return remaining() inside it and after it."""
    seen: list[float | None] = []

    def inner_body() -> str:
        seen.append(remaining())
        if fail:
            raise ValueError("boom")
        return "inner"

    def outer_body(inner: Callable[[], Any]) -> None:
        clock.advance(2.0)
        try:
            inner()
        except ValueError:
            pass
        seen.append(remaining())

    if colour.is_async:
        inner_async = Timeout(1.0, clock=clock)(_as_coroutine_function(colour, inner_body))

        @Deadline(10.0, clock=clock)
        async def outer_async() -> None:
            clock.advance(2.0)
            try:
                await inner_async()
            except ValueError:
                pass
            seen.append(remaining())

        colour.run(outer_async)
    else:
        inner_sync = Timeout(1.0, clock=clock)(inner_body)
        Deadline(10.0, clock=clock)(outer_body)(inner_sync)
    return seen


def _as_coroutine_function(colour: Colour, body: Callable[[], Any]) -> Callable[[], Awaitable[Any]]:
    async def coroutine_function() -> Any:
        await colour.checkpoint()
        return body()

    return coroutine_function


@pytest.mark.parametrize("fail", [False, True], ids=["returns", "raises"])
def test_the_outer_deadline_is_restored_after_an_inner_call(
    colour: Colour, clock: FakeClock, fail: bool
) -> None:
    """After an inner Timeout's call returns or raises, remaining() is the outer one again."""
    assert run_nested(colour, clock, fail) == [1.0, 8.0]
    assert remaining() is None


def test_context_is_restored_after_an_exception(colour: Colour, clock: FakeClock) -> None:
    """After a failing call, the deadline in force before it (none) is restored."""

    def boom() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        colour.wrap(Deadline(1.0, clock=clock), boom)()
    assert remaining() is None


def test_context_is_restored_after_a_timeout(async_colour: Colour, clock: FakeClock) -> None:
    """After a coroutine timed out, no deadline is left in force."""

    async def scenario() -> float | None:
        with pytest.raises(DeadlineExceededError):
            await Timeout(1.0, clock=clock)(clock.sleep_async)(5.0)
        return remaining()

    assert async_colour.run(scenario) is None


# -- sync code: told, not interrupted ----------------------------------------------------------


def test_sync_calls_are_told_not_interrupted(clock: FakeClock) -> None:
    """A sync call sees its deadline; one that overruns still returns its result."""
    seen: list[float | None] = []

    @Timeout(1.0, clock=clock)
    def overruns() -> str:
        seen.append(remaining())
        clock.advance(5.0)
        return "finished anyway"

    with EventRecorder() as recorder:
        assert overruns() == "finished anyway"
    assert seen == [1.0]
    assert recorder.of(DeadlineExceeded) == []


def test_no_time_left_means_no_call(clock: FakeClock) -> None:
    """A call starting after its deadline passed raises at once without running."""
    calls: list[str] = []

    @Deadline(1.0, clock=clock)
    def outer() -> None:
        clock.advance(2.0)
        Timeout(5.0, clock=clock, name="inner")(lambda: calls.append("ran"))()

    with EventRecorder() as recorder, pytest.raises(DeadlineExceededError):
        outer()
    assert calls == []
    assert [event.policy for event in recorder.of(DeadlineExceeded)] == ["inner"]
    assert remaining() is None


def test_no_time_left_means_no_coroutine_call(async_colour: Colour, clock: FakeClock) -> None:
    """The async shell refuses a call with no time left, too."""
    calls: list[str] = []

    @Timeout(5.0, clock=clock)
    async def inner() -> None:
        calls.append("ran")

    @Deadline(1.0, clock=clock)
    def outer() -> None:
        clock.advance(2.0)
        async_colour.run(inner)

    with pytest.raises(DeadlineExceededError):
        outer()
    assert calls == []


# -- with Retry --------------------------------------------------------------------------------


def test_per_attempt_timeouts_are_retried_within_the_deadline(
    async_colour: Colour, clock: FakeClock
) -> None:
    """Deadline(5) > Retry > Timeout(1): slow attempts time out, are retried, and it all ends
    by the deadline."""
    attempts = 0

    async def slow() -> str:
        nonlocal attempts
        attempts += 1
        await clock.sleep_async(2.0)  # twice the per-attempt timeout
        return "never"

    policy = Pipeline(
        Deadline(5.0, clock=clock),
        Retry(10, backoff=Backoff(initial=0.5, jitter="none", multiplier=1.0), clock=clock),
        Timeout(1.0, clock=clock),
    )
    start = clock.now()
    with EventRecorder() as recorder, pytest.raises(DeadlineExceededError) as caught:
        async_colour.run(policy(slow))
    assert "deadline" in caught.value.__notes__[-1]
    # 0-2 s attempt 1 (timed out at 1), 0.5 s backoff, 2.5-4.5 s attempt 2, then the next
    # 0.5 s backoff would reach the deadline: give up.
    assert attempts == 2
    assert clock.now() - start == 4.5
    assert [event.timeout for event in recorder.of(DeadlineExceeded)] == [1.0, 1.0]


def test_a_fast_enough_retry_succeeds_under_the_deadline(
    async_colour: Colour, clock: FakeClock
) -> None:
    """Deadline > Retry > Timeout: an attempt that times out is followed by one that returns."""
    durations = iter([2.0, 0.5])

    async def sometimes_slow() -> str:
        await clock.sleep_async(next(durations))
        return "ok"

    policy = Pipeline(
        Deadline(5.0, clock=clock),
        Retry(3, backoff=Backoff(initial=0.5, jitter="none", multiplier=1.0), clock=clock),
        Timeout(1.0, clock=clock),
    )
    start = clock.now()
    assert async_colour.run(policy(sometimes_slow)) == "ok"
    assert clock.now() - start == 3.0  # 2 s (timed out at 1) + 0.5 s backoff + 0.5 s


# -- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize("seconds", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_durations_name_the_parameter(seconds: float) -> None:
    """Timeout and Deadline need a finite positive number of seconds."""
    with pytest.raises(ValueError, match="seconds"):
        Timeout(seconds)
    with pytest.raises(ValueError, match="seconds"):
        Deadline(seconds)
