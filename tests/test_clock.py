"""Clocks under every colour: the system clock's waits and timers, the fake clock's."""

from __future__ import annotations

import asyncio
import threading

import pytest
import trio
import trio.testing

from resilience._clock import SYSTEM_CLOCK, async_library
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
