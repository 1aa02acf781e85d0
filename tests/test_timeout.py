"""Timeout and Deadline: published in context, enforced on coroutines, never killing threads."""

from __future__ import annotations

import asyncio

import pytest

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


def test_a_slow_coroutine_is_cancelled(clock: FakeClock) -> None:
    """A coroutine outliving its Timeout is cancelled; DeadlineExceededError (a TimeoutError)."""
    reached_end = False

    @Timeout(1.0, clock=clock)
    async def slow() -> str:
        nonlocal reached_end
        await clock.sleep_async(5.0)
        reached_end = True
        return "late"

    with EventRecorder() as recorder, pytest.raises(DeadlineExceededError) as caught:
        asyncio.run(slow())
    assert isinstance(caught.value, TimeoutError)
    assert caught.value.timeout == 1.0
    assert not reached_end
    assert [event.timeout for event in recorder.of(DeadlineExceeded)] == [1.0]


def test_a_fast_coroutine_returns_and_leaves_no_stray_cancellation(clock: FakeClock) -> None:
    """A coroutine finishing in time returns its value; its timer is cancelled."""

    @Timeout(1.0, clock=clock)
    async def fast() -> str:
        await clock.sleep_async(0.5)
        return "ok"

    async def scenario() -> str:
        value = await fast()
        clock.advance(10.0)  # the timer would have fired by now
        await asyncio.sleep(0)  # a stray cancellation would land here
        return value

    assert asyncio.run(scenario()) == "ok"


def test_an_outer_cancellation_is_not_turned_into_a_timeout(clock: FakeClock) -> None:
    """Cancelling the task from outside raises CancelledError, not DeadlineExceededError."""

    @Timeout(10.0, clock=clock)
    async def waits() -> None:
        await asyncio.get_running_loop().create_future()

    async def scenario() -> None:
        task = asyncio.create_task(waits())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())


def test_remaining_reflects_the_nearest_deadline(colour: Colour, clock: FakeClock) -> None:
    """Inside nested scopes remaining() is the earliest end; outside it is None."""
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
        clock.advance(3.0)
        seen.append(remaining())

    late()
    assert seen == [0.0]


def test_sync_calls_are_told_not_interrupted(clock: FakeClock) -> None:
    """A sync call that overruns still returns its result: threads are never killed."""

    @Timeout(1.0, clock=clock)
    def overruns() -> str:
        clock.advance(5.0)
        return "finished anyway"

    assert overruns() == "finished anyway"


def test_no_time_left_means_no_call(clock: FakeClock) -> None:
    """A call starting after its deadline passed raises at once without running."""
    calls: list[str] = []

    @Deadline(1.0, clock=clock)
    def outer() -> None:
        clock.advance(2.0)
        Timeout(5.0, clock=clock)(lambda: calls.append("ran"))()

    with pytest.raises(DeadlineExceededError):
        outer()
    assert calls == []


def test_no_time_left_means_no_coroutine_call(clock: FakeClock) -> None:
    """The async shell refuses a call with no time left, too."""
    calls: list[str] = []

    @Timeout(5.0, clock=clock)
    async def inner() -> None:
        calls.append("ran")

    @Deadline(1.0, clock=clock)
    def outer() -> None:
        clock.advance(2.0)
        asyncio.run(inner())

    with pytest.raises(DeadlineExceededError):
        outer()
    assert calls == []


def test_context_is_restored_after_an_exception(colour: Colour, clock: FakeClock) -> None:
    """After a failing call, the deadline in force before it is restored."""

    def boom() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        colour.wrap(Deadline(1.0, clock=clock), boom)()
    assert remaining() is None


def test_per_attempt_timeouts_are_retried_within_the_deadline(clock: FakeClock) -> None:
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
    with pytest.raises(DeadlineExceededError) as caught:
        asyncio.run(policy(slow)())
    assert "deadline" in caught.value.__notes__[-1]
    # 0-2 s attempt 1 (timed out at 1), 0.5 s backoff, 2.5-4.5 s attempt 2, then the next
    # 0.5 s backoff would reach the deadline: give up.
    assert attempts == 2
    assert clock.now() - start == 4.5


@pytest.mark.parametrize("seconds", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_durations_name_the_parameter(seconds: float) -> None:
    """Timeout and Deadline need a finite positive number of seconds."""
    with pytest.raises(ValueError, match="seconds"):
        Timeout(seconds)
    with pytest.raises(ValueError, match="seconds"):
        Deadline(seconds)
