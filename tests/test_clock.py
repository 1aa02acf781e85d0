"""Clocks under every colour: the system clock's waits and timers, the fake clock's."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import trio
import trio.testing

from resilience._clock import SYSTEM_CLOCK, Clock, async_library, check_clock
from resilience._context import DeadlineScope
from resilience._wake import TimeLimit
from resilience.testing import FakeClock
from tests.conftest import Colour


def test_the_running_library_is_named(async_colour: Colour) -> None:
    """Inside a coroutine, async_library() names the library that runs it."""

    async def name() -> str:
        return async_library()

    assert async_colour.run(name) == async_colour.name


def test_the_system_clock_sleeps_under_the_running_library(async_colour: Colour) -> None:
    """sleep_async(0) goes through the running library's own sleep (no asyncio under trio)."""

    async def scenario() -> str:
        await SYSTEM_CLOCK.sleep_async(0.0)
        return "slept"

    assert async_colour.run(scenario) == "slept"


def test_the_system_clocks_trio_timer_fires_once_and_in_time() -> None:
    """Under trio, call_later runs the callback after the delay on trio's clock, once."""
    fired: list[float] = []

    async def scenario() -> None:
        start = trio.current_time()
        SYSTEM_CLOCK.call_later(5.0, lambda: fired.append(trio.current_time() - start))
        await trio.sleep(4.0)
        assert fired == []
        await trio.sleep(2.0)

    trio.run(scenario, clock=trio.testing.MockClock(autojump_threshold=0))
    assert fired == [5.0]


def test_a_cancelled_trio_timer_never_fires() -> None:
    """Under trio, a timer called off before its time does nothing."""
    fired: list[str] = []

    async def scenario() -> None:
        timer = SYSTEM_CLOCK.call_later(5.0, lambda: fired.append("fired"))
        await trio.sleep(1.0)
        timer.cancel()
        await trio.sleep(10.0)

    trio.run(scenario, clock=trio.testing.MockClock(autojump_threshold=0))
    assert fired == []


def test_a_failing_trio_timer_callback_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A callback that raises is logged; the run goes on (a system task's error would end it)."""

    def boom() -> None:
        raise ValueError("boom")

    async def scenario() -> str:
        SYSTEM_CLOCK.call_later(1.0, boom)
        await trio.sleep(2.0)
        return "still running"

    with caplog.at_level("ERROR", logger="resilience"):
        assert trio.run(scenario, clock=trio.testing.MockClock(autojump_threshold=0)) == (
            "still running"
        )
    assert "callback failed" in caplog.text


def test_the_system_clocks_asyncio_timer_is_the_loops() -> None:
    """Under asyncio, call_later is the running loop's (a TimerHandle)."""

    async def scenario() -> object:
        timer = SYSTEM_CLOCK.call_later(60.0, lambda: None)
        timer.cancel()
        return timer

    assert isinstance(asyncio.run(scenario()), asyncio.TimerHandle)


def test_the_fake_clock_sleeps_without_waiting_in_every_library(
    async_colour: Colour, clock: FakeClock
) -> None:
    """FakeClock.sleep_async advances the fake time, records the sleep and yields once."""

    async def scenario() -> float:
        await clock.sleep_async(2.5)
        return clock.now()

    assert async_colour.run(scenario) == 1002.5
    assert clock.sleeps == [2.5]


def test_the_fake_clocks_timers_fire_from_any_thread(clock: FakeClock) -> None:
    """A timer fires, in order, on the thread that advances the time past it."""
    fired: list[tuple[str, bool]] = []
    main = threading.get_ident()
    clock.call_later(2.0, lambda: fired.append(("second", threading.get_ident() == main)))
    clock.call_later(1.0, lambda: fired.append(("first", threading.get_ident() == main)))
    cancelled = clock.call_later(1.5, lambda: fired.append(("cancelled", True)))
    cancelled.cancel()
    advancer = threading.Thread(target=clock.advance, args=(3.0,))
    advancer.start()
    advancer.join(10)
    assert fired == [("first", False), ("second", False)]


def test_the_fake_clock_lists_its_live_timers(clock: FakeClock) -> None:
    """``pending_timers``: the due times of timers neither fired nor cancelled, soonest first."""
    clock.call_later(3.0, lambda: None)
    clock.call_later(1.0, lambda: None)
    clock.call_later(2.0, lambda: None).cancel()
    assert clock.pending_timers == [1001.0, 1003.0]
    clock.advance(1.0)
    assert clock.pending_timers == [1003.0]


def test_a_clock_that_is_not_a_clock_is_refused_naming_the_parameter() -> None:
    """``check_clock`` accepts None and Clocks, and names the parameter otherwise."""
    check_clock(None)
    check_clock(SYSTEM_CLOCK)
    check_clock(FakeClock())
    with pytest.raises(TypeError, match="clock must be a Clock"):
        check_clock(time.monotonic)


# -- a queued call's time limit (_wake.TimeLimit) ---------------------------------------------

OTHER = FakeClock(start=50.0)  # a deadline's clock other than the policy's; never advanced


@pytest.mark.parametrize(
    ("policy_clock", "max_wait", "deadline", "timeout", "timers", "other_timers"),
    [
        ("system", 0.5, None, 0.5, [], []),
        ("system", None, None, None, [], []),
        ("system", 0.5, ("system", 100.0), 0.5, [], []),
        ("system", None, ("system", -1.0), 0.0, [], []),
        ("system", None, ("other", 2.0), None, [], [52.0]),
        ("fake", 5.0, None, None, [1005.0], []),
        ("fake", None, None, None, [], []),
        ("fake", 5.0, ("fake", 2.0), None, [1002.0], []),
        ("fake", 1.0, ("fake", 2.0), None, [1001.0], []),
        ("fake", 5.0, ("other", 2.0), None, [1005.0], [52.0]),
        ("fake", 5.0, ("system", 100.0), "about 100", [1005.0], []),
        ("fake", 5.0, ("fake", -1.0), 0.0, [], []),
        ("fake", 5.0, ("other", 0.0), 0.0, [], []),
    ],
)
def test_a_queue_wait_is_limited_on_the_clock_each_limit_was_set_on(
    clock: FakeClock,
    policy_clock: str,
    max_wait: float | None,
    deadline: tuple[str, float] | None,
    timeout: float | str | None,
    timers: list[float],
    other_timers: list[float],
) -> None:
    """max_wait runs on the policy's clock and the deadline on its own: limits on the system
    clock become the wait's own timeout (the smallest), others a timer each (one per clock, for
    the sooner end); a spent deadline means no wait; leaving the block cancels the timers."""
    clocks: dict[str, Clock] = {"system": SYSTEM_CLOCK, "fake": clock, "other": OTHER}
    scope = None
    if deadline is not None:
        on = clocks[deadline[0]]
        scope = DeadlineScope(on.now() + deadline[1], on)
    woken: list[str] = []
    limit = TimeLimit(clocks[policy_clock], max_wait, scope, lambda: woken.append("woken"))
    with limit as got:
        if timeout == "about 100":
            assert got is not None and 99.0 < got <= 100.0
        else:
            assert got == timeout
        assert (clock.pending_timers, OTHER.pending_timers) == (timers, other_timers)
    assert (clock.pending_timers, OTHER.pending_timers) == ([], [])
    assert woken == []


def test_a_limits_timer_wakes_the_waiter(clock: FakeClock) -> None:
    """The timer of a limit on a FakeClock calls the wake-up when the clock passes it."""
    woken: list[float] = []
    with TimeLimit(clock, 5.0, None, lambda: woken.append(clock.now())):
        clock.advance(4.75)
        assert woken == []
        clock.advance(0.25)
        assert woken == [1005.0]
