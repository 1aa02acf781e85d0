"""resilience.testing: FakeClock and EventRecorder behave as documented."""

from __future__ import annotations

import asyncio

import pytest

from resilience import Retry, RetryScheduled
from resilience.testing import EventRecorder, FakeClock


def test_fake_clock_moves_only_when_told() -> None:
    """now() changes by advance() and sleep(); sleeps are recorded."""
    clock = FakeClock(start=5.0)
    assert clock.now() == 5.0
    clock.advance(1.5)
    clock.sleep(2.0)
    asyncio.run(clock.sleep_async(0.5))
    assert clock.now() == 9.0
    assert clock.sleeps == [2.0, 0.5]


def test_timers_fire_in_order_when_time_passes_them() -> None:
    """call_later callbacks fire at their time, in order; cancelled ones never fire."""
    clock = FakeClock()
    fired: list[tuple[str, float]] = []
    clock.call_later(2.0, lambda: fired.append(("b", clock.now())))
    clock.call_later(1.0, lambda: fired.append(("a", clock.now())))
    clock.call_later(1.5, lambda: fired.append(("never", clock.now()))).cancel()
    clock.advance(0.5)
    assert fired == []
    clock.advance(5.0)
    assert fired == [("a", 1.0), ("b", 2.0)]
    assert clock.now() == 5.5


def test_advance_rejects_going_back() -> None:
    """Time never runs backwards."""
    with pytest.raises(ValueError, match="seconds"):
        FakeClock().advance(-1.0)


def test_event_recorder_collects_only_inside_its_block() -> None:
    """Events emitted outside the ``with`` block are not recorded."""
    clock = FakeClock()
    flaky = Retry(2, clock=clock)(lambda: 1 / 0)
    with EventRecorder() as recorder, pytest.raises(ZeroDivisionError):
        flaky()
    with pytest.raises(ZeroDivisionError):
        flaky()
    assert len(recorder.of(RetryScheduled)) == 1
