"""resilience.testing: FakeClock and EventRecorder behave as documented."""

from __future__ import annotations

import asyncio

import pytest

from resilience import Retry, RetryGaveUp, RetryScheduled, subscribe
from resilience.testing import EventRecorder, FakeClock


def test_fake_clock_moves_only_when_told() -> None:
    """now() changes by advance(), sleep() and sleep_async(); only sleeps are recorded."""
    clock = FakeClock(start=5.0)
    assert clock.now() == 5.0
    assert clock.now() == 5.0
    clock.advance(1.5)
    assert clock.now() == 6.5
    clock.sleep(2.0)
    assert clock.now() == 8.5
    asyncio.run(clock.sleep_async(0.5))
    assert clock.now() == 9.0
    assert clock.sleeps == [2.0, 0.5]


def test_a_fake_clock_starts_at_zero() -> None:
    """Without ``start`` the time is 0.0 and nothing has slept."""
    clock = FakeClock()
    assert (clock.now(), clock.sleeps) == (0.0, [])


def test_a_negative_sleep_is_recorded_but_does_not_move_time() -> None:
    """A sleep for a negative time is recorded as asked and leaves the time alone."""
    clock = FakeClock(start=3.0)
    clock.sleep(-1.0)
    assert (clock.now(), clock.sleeps) == (3.0, [-1.0])


def test_sleep_async_yields_to_the_loop_once() -> None:
    """Other tasks run during sleep_async, and the sleeper can be cancelled there."""
    clock = FakeClock()
    ran: list[str] = []

    async def other() -> None:
        ran.append("other")

    async def scenario() -> None:
        task = asyncio.create_task(other())
        await clock.sleep_async(1.0)
        assert ran == ["other"]
        await task
        sleeper = asyncio.create_task(clock.sleep_async(1.0))
        await asyncio.sleep(0)  # the sleeper advanced the time and now waits for its turn
        sleeper.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sleeper

    asyncio.run(scenario())
    assert clock.now() == 2.0


def test_timers_fire_in_order_when_time_passes_them() -> None:
    """call_later callbacks fire at their time, in order; cancelled ones never fire."""
    clock = FakeClock()
    fired: list[tuple[str, float]] = []
    clock.call_later(2.0, lambda: fired.append(("b", clock.now())))
    clock.call_later(1.0, lambda: fired.append(("a", clock.now())))
    clock.call_later(2.0, lambda: fired.append(("b2", clock.now())))  # same time: FIFO
    clock.call_later(1.5, lambda: fired.append(("never", clock.now()))).cancel()
    clock.advance(0.5)
    assert fired == []
    clock.advance(5.0)
    assert fired == [("a", 1.0), ("b", 2.0), ("b2", 2.0)]
    assert clock.now() == 5.5
    clock.advance(10.0)
    assert len(fired) == 3  # each fires once


def test_a_timer_falls_due_exactly_at_its_time() -> None:
    """A timer for t fires when the time reaches t, not before; sleeps fire timers too."""
    clock = FakeClock()
    fired: list[float] = []
    clock.call_later(1.0, lambda: fired.append(clock.now()))
    clock.sleep(0.999)
    assert fired == []
    clock.sleep(0.001)
    assert fired == [1.0]


def test_a_timer_may_schedule_and_advance() -> None:
    """A callback may set a new timer (which fires in the same advance when due) and may
    advance the time itself, which never moves backwards afterwards."""
    clock = FakeClock()
    fired: list[tuple[str, float]] = []

    def first() -> None:
        fired.append(("first", clock.now()))
        clock.call_later(0.5, lambda: fired.append(("chained", clock.now())))

    clock.call_later(1.0, first)
    clock.advance(2.0)
    assert fired == [("first", 1.0), ("chained", 1.5)]
    assert clock.now() == 2.0

    clock.call_later(1.0, lambda: clock.advance(5.0))  # fires at 3.0, jumps to 8.0
    clock.advance(2.0)
    assert clock.now() == 8.0


def test_advance_rejects_going_back() -> None:
    """Time never runs backwards: advance() of a negative amount names the parameter."""
    clock = FakeClock(start=1.0)
    with pytest.raises(ValueError, match="seconds"):
        clock.advance(-1.0)
    assert clock.now() == 1.0


def test_event_recorder_collects_only_inside_its_block() -> None:
    """Events emitted outside the ``with`` block are not recorded, and it unsubscribes."""
    clock = FakeClock()
    flaky = Retry(2, clock=clock)(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        flaky()  # before: not recorded
    with EventRecorder() as recorder, pytest.raises(ZeroDivisionError):
        flaky()
    with pytest.raises(ZeroDivisionError):
        flaky()  # after: not recorded
    assert len(recorder.of(RetryScheduled)) == 1
    assert len(recorder.of(RetryGaveUp)) == 1
    assert [type(event) for event in recorder.events] == [RetryScheduled, RetryGaveUp]


def test_event_recorder_stops_even_when_the_block_raises() -> None:
    """Leaving the block by an exception unsubscribes the recorder too."""
    clock = FakeClock()
    flaky = Retry(2, clock=clock)(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError), EventRecorder() as recorder:
        flaky()
    with pytest.raises(ZeroDivisionError):
        flaky()
    assert len(recorder.events) == 2


def test_event_recorders_nest_and_coexist_with_listeners() -> None:
    """An inner recorder sees only its block's events; the outer one and other listeners see
    all of them."""
    clock = FakeClock()
    flaky = Retry(2, clock=clock)(lambda: 1 / 0)
    heard: list[object] = []
    unsubscribe = subscribe(heard.append)
    try:
        with EventRecorder() as outer:
            with pytest.raises(ZeroDivisionError):
                flaky()
            with EventRecorder() as inner, pytest.raises(ZeroDivisionError):
                flaky()
    finally:
        unsubscribe()
    assert len(inner.of(RetryScheduled)) == 1
    assert len(outer.of(RetryScheduled)) == 2
    assert heard == outer.events
