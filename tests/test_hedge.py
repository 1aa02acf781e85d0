"""Hedge as a policy of its own: slow calls get a second copy; the first good answer wins."""

from __future__ import annotations

import asyncio
import threading

import pytest

from resilience import Hedge, HedgeSent
from resilience.testing import EventRecorder, FakeClock


def test_async_hedge_answers_a_slow_call_with_the_second_copy() -> None:
    """After ``delay`` without an answer a second copy runs; its answer wins; the first is
    cancelled."""
    clock = FakeClock()
    cancelled: list[int] = []
    calls = 0

    @Hedge(0.1, clock=clock)
    async def fetch() -> str:
        nonlocal calls
        calls += 1
        mine = calls
        if mine == 1:
            try:
                await asyncio.get_running_loop().create_future()  # never answers
            except asyncio.CancelledError:
                cancelled.append(mine)
                raise
        return f"copy {mine}"

    async def scenario() -> str:
        task = asyncio.create_task(fetch())
        for _ in range(3):
            await asyncio.sleep(0)
        clock.advance(0.1)  # the hedge delay passes
        return await asyncio.wait_for(task, 5)

    with EventRecorder() as recorder:
        assert asyncio.run(scenario()) == "copy 2"
    assert cancelled == [1]
    assert [event.attempt for event in recorder.of(HedgeSent)] == [2]


def test_a_fast_call_sends_no_hedge() -> None:
    """A call answering before the delay is the only copy."""
    clock = FakeClock()
    calls = 0

    @Hedge(1.0, clock=clock)
    async def fetch() -> int:
        nonlocal calls
        calls += 1
        return 7

    assert asyncio.run(fetch()) == 7
    assert calls == 1


def test_a_failing_copy_triggers_the_next_at_once_and_all_failing_raises_the_first() -> None:
    """A failure launches the next copy without waiting; if all fail, the first error rises."""
    clock = FakeClock()
    calls = 0

    @Hedge(60.0, max_hedges=2, clock=clock)
    async def fetch() -> int:
        nonlocal calls
        calls += 1
        raise ConnectionError(f"copy {calls}")

    with pytest.raises(ConnectionError, match="copy 1"):
        asyncio.run(fetch())
    assert calls == 3
    assert clock.now() == 0.0  # nobody waited for the delay


def test_unaccepted_results_do_not_win_and_losers_are_discarded() -> None:
    """Results matching ``on_result`` lose to a good answer; discarded values are handed over."""
    clock = FakeClock()
    discarded: list[str] = []
    answers = iter(["bad", "good"])

    @Hedge(60.0, on_result=lambda value: value == "bad", discard=discarded.append, clock=clock)
    async def fetch() -> str:
        return next(answers)

    assert asyncio.run(fetch()) == "good"
    assert discarded == ["bad"]


def test_sync_hedge_uses_threads_and_abandons_the_slow_copy() -> None:
    """Plain functions are hedged in threads; the slow copy's late value is discarded."""
    release = threading.Event()
    discarded: list[str] = []
    calls = 0
    lock = threading.Lock()

    @Hedge(0.02, discard=discarded.append)
    def fetch() -> str:
        nonlocal calls
        with lock:
            calls += 1
            mine = calls
        if mine == 1:
            assert release.wait(10)
            return "slow"
        return "fast"

    assert fetch() == "fast"
    release.set()
    for _ in range(1000):  # wait (bounded) for the abandoned thread to hand its value over
        if discarded:
            break
        threading.Event().wait(0.005)
    assert discarded == ["slow"]


def test_cancelling_a_hedged_call_cancels_every_copy() -> None:
    """Cancelling the caller cancels all copies in flight."""
    clock = FakeClock()
    cancelled = 0

    @Hedge(0.1, max_hedges=2, clock=clock)
    async def fetch() -> None:
        nonlocal cancelled
        try:
            await asyncio.get_running_loop().create_future()
        except asyncio.CancelledError:
            cancelled += 1
            raise

    async def scenario() -> None:
        task = asyncio.create_task(fetch())
        for step in range(2):
            for _ in range(3):
                await asyncio.sleep(0)
            clock.advance(0.1 * (step + 1))
        for _ in range(3):
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert cancelled == 3


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"delay": -1.0}, "delay"), ({"delay": 1.0, "max_hedges": 0}, "max_hedges")],
)
def test_bad_configuration_names_the_parameter(kwargs: dict[str, float], name: str) -> None:
    """Invalid settings fail at construction, naming the parameter."""
    with pytest.raises(ValueError, match=name):
        Hedge(**kwargs)  # type: ignore[arg-type]
