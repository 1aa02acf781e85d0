"""Timeout and Deadline as context managers: the decorators' rules, for a block of code."""

from __future__ import annotations

import sys
import threading

import anyio
import pytest

from resilience import Deadline, DeadlineExceeded, DeadlineExceededError, Timeout, remaining
from resilience.testing import EventRecorder, FakeClock
from tests.conftest import Colour

# -- with: published, never interrupting -------------------------------------------------------


def test_a_block_sees_its_deadline_and_it_is_withdrawn_after(clock: FakeClock) -> None:
    """Inside ``with Deadline(2.0)`` remaining() counts down from 2 s; after it, None."""
    seen: list[float | None] = []
    with Deadline(2.0, clock=clock):
        seen.append(remaining())
        clock.advance(0.5)
        seen.append(remaining())
    assert seen == [2.0, 1.5]
    assert remaining() is None


def test_nested_blocks_keep_the_nearest_deadline(clock: FakeClock) -> None:
    """An inner, shorter Timeout is in force inside it; the outer Deadline again after it."""
    seen: list[float | None] = []
    with Deadline(5.0, clock=clock):
        with Timeout(1.0, clock=clock):
            seen.append(remaining())
        seen.append(remaining())
        with Timeout(10.0, clock=clock):  # longer than what is left: the outer one stays
            seen.append(remaining())
    assert seen == [1.0, 5.0, 5.0]
    assert remaining() is None


def test_one_instance_may_be_entered_again_inside_itself(clock: FakeClock) -> None:
    """Block state is per entry, not on the policy: re-entering the same object nests."""
    budget = Timeout(1.0, clock=clock)
    seen: list[float | None] = []
    with budget:
        clock.advance(0.25)
        with budget:
            seen.append(remaining())
        seen.append(remaining())
    assert seen == [0.75, 0.75]
    assert remaining() is None


def test_one_instance_may_be_entered_by_threads_at_once(clock: FakeClock) -> None:
    """Two threads inside the same Deadline block each see their own deadline and leave
    nothing behind, whatever the order they leave in."""
    budget = Deadline(3.0, clock=clock)
    inside = threading.Barrier(2, timeout=10)
    seen: dict[str, tuple[float | None, float | None]] = {}

    def work(name: str) -> None:
        with budget:
            first = remaining()
            inside.wait()
        seen[name] = (first, remaining())

    threads = [threading.Thread(target=work, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert seen == {"a": (3.0, None), "b": (3.0, None)}


def test_an_overrunning_block_is_not_interrupted_and_raises_nothing(clock: FakeClock) -> None:
    """A sync block cannot be interrupted; one that overruns keeps what it did, as the sync
    decorator returns a late result."""
    done: list[str] = []
    with EventRecorder() as recorder, Timeout(1.0, clock=clock):
        clock.advance(5.0)
        done.append("finished anyway")
    assert done == ["finished anyway"]
    assert recorder.of(DeadlineExceeded) == []


def test_a_block_with_no_time_left_does_not_run(clock: FakeClock) -> None:
    """Entering with the enclosing deadline spent raises at once; the block does not run and
    the outer deadline is in force again after it."""
    ran: list[str] = []
    with Deadline(1.0, clock=clock):
        clock.advance(2.0)
        with (
            EventRecorder() as recorder,
            pytest.raises(DeadlineExceededError),
            Timeout(5.0, clock=clock, name="inner"),
        ):
            ran.append("ran")
        assert remaining() == 0.0
    assert ran == []
    assert [event.policy for event in recorder.of(DeadlineExceeded)] == ["inner"]
    assert remaining() is None


def test_an_error_leaves_the_block_and_the_deadline(clock: FakeClock) -> None:
    """An exception from the block passes through unchanged; the deadline is withdrawn."""
    with pytest.raises(ValueError, match="boom"), Deadline(1.0, clock=clock):
        raise ValueError("boom")
    assert remaining() is None


def test_exiting_a_block_never_entered_is_an_error() -> None:
    """A stray __exit__ says what went wrong instead of corrupting the context."""
    with pytest.raises(RuntimeError, match="without being entered"):
        Timeout(1.0).__exit__(None, None, None)


# -- async with: the block is cancelled when the time runs out ---------------------------------


def test_an_async_block_is_cancelled_when_its_time_runs_out(
    async_colour: Colour, clock: FakeClock
) -> None:
    """``async with Timeout(1.0)`` cancels a slow body and raises DeadlineExceededError; the
    code after the slow await never runs and the deadline is withdrawn."""
    reached: list[str] = []

    async def slow_block() -> None:
        async with Timeout(1.0, clock=clock):
            await clock.sleep_async(5.0)
            reached.append("after the sleep")

    async def scenario() -> float | None:
        with pytest.raises(DeadlineExceededError) as caught:
            await slow_block()
        assert (caught.value.name, caught.value.timeout) == ("Timeout", 1.0)
        await async_colour.checkpoint()  # no cancellation is left behind
        return remaining()

    with EventRecorder() as recorder:
        assert async_colour.run(scenario) is None
    assert reached == []
    assert len(recorder.of(DeadlineExceeded)) == 1


def test_an_async_block_on_the_system_clock_is_cancelled(async_colour: Colour) -> None:
    """On the real clock the running library's own timer cancels the block."""

    async def scenario() -> None:
        async with Deadline(0.01):
            await anyio.Event().wait()

    with pytest.raises(DeadlineExceededError):
        async_colour.run(scenario)


def test_a_fast_async_block_finishes_and_sees_its_deadline(
    async_colour: Colour, clock: FakeClock
) -> None:
    """A block done in time runs to its end with the deadline published, and its timer does not
    fire later."""

    async def scenario() -> list[float | None]:
        seen: list[float | None] = []
        async with Deadline(2.0, clock=clock):
            seen.append(remaining())
            await clock.sleep_async(0.5)
            seen.append(remaining())
        clock.advance(10.0)
        await async_colour.checkpoint()  # a stray cancellation would land here
        await async_colour.checkpoint()
        seen.append(remaining())
        return seen

    assert async_colour.run(scenario) == [2.0, 1.5, None]


def test_an_async_block_with_no_time_left_does_not_run(
    async_colour: Colour, clock: FakeClock
) -> None:
    """Entering with no time left raises at once, before the body."""
    ran: list[str] = []

    async def scenario() -> None:
        with Deadline(1.0, clock=clock):
            clock.advance(1.0)
            async with Timeout(5.0, clock=clock):
                ran.append("ran")

    with pytest.raises(DeadlineExceededError):
        async_colour.run(scenario)
    assert ran == []
    assert remaining() is None


def test_an_outer_cancellation_of_an_async_block_stays_a_cancellation(
    async_colour: Colour, clock: FakeClock
) -> None:
    """Cancelled from outside, the block ends as a cancellation, not DeadlineExceededError."""

    async def scenario() -> bool:
        with anyio.CancelScope() as outside:
            async with Timeout(10.0, clock=clock):
                outside.cancel()
                await anyio.Event().wait()
        return outside.cancelled_caught

    with EventRecorder() as recorder:
        assert async_colour.run(scenario) is True
    assert recorder.of(DeadlineExceeded) == []


def test_nested_async_blocks_report_the_deadline_that_ran_out(
    async_colour: Colour, clock: FakeClock
) -> None:
    """A Deadline(1) block around a Timeout(5) block: the body is cancelled at 1 s and the
    Deadline is reported."""

    async def scenario() -> None:
        async with Deadline(1.0, clock=clock), Timeout(5.0, clock=clock):
            await clock.sleep_async(10.0)

    if async_colour.name == "asyncio" and sys.version_info < (3, 11):
        pytest.skip("Task.cancelling() is new in Python 3.11")
    with pytest.raises(DeadlineExceededError) as caught:
        async_colour.run(scenario)
    assert (caught.value.name, caught.value.timeout) == ("Deadline", 1.0)
