"""Outcome windows and sliding counters: exactly the last N calls, or the calls of the last T s."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resilience._circuit.window import CountWindow, TimeWindow
from resilience._sliding import SlidingCounters

outcomes = st.lists(st.tuples(st.booleans(), st.booleans()), max_size=40)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 8), outcomes)
def test_count_window_holds_exactly_the_last_n_outcomes(
    size: int, recorded: list[tuple[bool, bool]]
) -> None:
    """After every record, a count window's totals are those of the last ``size`` outcomes."""
    window = CountWindow(size)
    for position, (failed, slow) in enumerate(recorded):
        window.record(float(position), failed, slow)
        last = recorded[max(0, position + 1 - size) : position + 1]
        assert window.calls == len(last)
        assert window.failures == sum(failed for failed, _ in last)
        assert window.slow == sum(slow for _, slow in last)


def test_count_window_ignores_time_and_forgets_on_reset() -> None:
    """Nothing ages out of a count window; reset empties it and it fills again from scratch."""
    window = CountWindow(3)
    window.record(0.0, True, False)
    window.record(1.0, True, True)
    window.refresh(1e9)
    assert (window.calls, window.failures, window.slow) == (2, 2, 1)
    window.reset()
    assert (window.calls, window.failures, window.slow) == (0, 0, 0)
    for _ in range(4):
        window.record(2.0, False, False)
    assert (window.calls, window.failures, window.slow) == (3, 0, 0)


def test_time_window_keeps_an_outcome_for_at_least_the_window() -> None:
    """An outcome recorded mid-slice still counts a full window later (and a bit more)."""
    window = TimeWindow(10.0)  # ten slices of 1 s
    window.record(1000.5, True, True)
    for now in (1009.9, 1010.0, 1010.5, 1010.99):
        window.refresh(now)
        assert (window.calls, window.failures, window.slow) == (1, 1, 1), now


def test_time_window_forgets_an_outcome_within_a_tenth_past_the_window() -> None:
    """An outcome is gone once it is older than window * (1 + 1/10)."""
    window = TimeWindow(10.0)
    window.record(1000.5, True, False)
    window.refresh(1011.5)
    assert (window.calls, window.failures, window.slow) == (0, 0, 0)


def test_time_window_counts_each_field_and_resets() -> None:
    """Calls, failures and slow calls are counted separately; reset forgets them all."""
    window = TimeWindow(10.0)
    window.record(1000.0, False, False)
    window.record(1000.2, True, False)
    window.record(1003.7, False, True)
    window.record(1004.0, True, True)
    assert (window.calls, window.failures, window.slow) == (4, 2, 2)
    window.reset()
    assert (window.calls, window.failures, window.slow) == (0, 0, 0)
    window.record(1004.1, True, False)
    assert (window.calls, window.failures, window.slow) == (1, 1, 0)


# Slices of 0.25 s and times in eighths of a second: every float below is exact.
WINDOW, SLICES = 2.5, 10
WIDTH = WINDOW / SLICES
steps = st.lists(
    st.tuples(st.integers(0, 30), st.booleans(), st.booleans()), min_size=1, max_size=40
)


@settings(max_examples=100, deadline=None)
@given(steps)
def test_time_window_keeps_outcomes_between_window_and_a_tenth_more(
    script: list[tuple[int, bool, bool]],
) -> None:
    """At any time, every outcome younger than the window counts and none older than 1.1 x.

    Exactly: an outcome counts while its slice has not fully left the window.
    """
    window = TimeWindow(WINDOW, slices=SLICES)
    now = 1000.0
    seen: list[tuple[float, bool, bool]] = []
    for eighths, failed, slow in script:
        now += eighths / 8
        window.refresh(now)
        live = [entry for entry in seen if now - entry[0] < WINDOW + WIDTH]
        young = [entry for entry in seen if now - entry[0] <= WINDOW]
        assert len(young) <= window.calls <= len(live)
        exact = [
            entry
            for entry in seen
            if math.floor(now / WIDTH) - math.floor(entry[0] / WIDTH) <= SLICES
        ]
        assert window.calls == len(exact)
        assert window.failures == sum(entry[1] for entry in exact)
        assert window.slow == sum(entry[2] for entry in exact)
        window.record(now, failed, slow)
        seen.append((now, failed, slow))


def test_sliding_counters_keep_the_api_the_retry_budget_uses() -> None:
    """advance() returns the current slice's index; add() and direct writes update the totals."""
    counters = SlidingCounters(10.0, fields=2)
    assert counters.totals == [0, 0]
    index = counters.advance(1000.5)
    assert 0 <= index < len(counters.slices[0])
    assert len(counters.slices) == 2
    counters.slices[1][index] += 1
    counters.totals[1] += 1
    counters.add(1000.7, 0)
    assert counters.advance(1000.9) == index  # the same slice: the same index
    counters.add(1003.0, 0, amount=5)
    assert counters.totals == [6, 1]
    counters.advance(1010.5)  # 10 s after the first entries: all still inside
    assert counters.totals == [6, 1]
    counters.advance(1011.5)  # the slice of 1000.x has fully left the window
    assert counters.totals == [5, 0]
    counters.reset()
    assert counters.totals == [0, 0]
    assert all(value == 0 for column in counters.slices for value in column)
    counters.add(1012.0, 1)
    assert counters.totals == [0, 1]


def test_sliding_counters_forget_everything_after_a_long_pause() -> None:
    """A jump of more than the window forgets every slice at once."""
    counters = SlidingCounters(1.0, fields=1, slices=4)
    for step in range(8):
        counters.add(5.0 + step / 8, 0)
    assert counters.totals == [8]
    counters.advance(500.0)
    assert counters.totals == [0]
    counters.add(500.1, 0)
    assert counters.totals == [1]


def test_sliding_counters_keep_counts_when_the_clock_steps_back() -> None:
    """A clock that steps back neither loses counts nor raises."""
    counters = SlidingCounters(10.0, fields=1)
    counters.add(1005.0, 0)
    counters.add(1001.0, 0)  # earlier than the newest slice: counted in the newest
    assert counters.totals == [2]
    counters.advance(1015.5)
    assert counters.totals == [2]
    counters.advance(1016.0)
    assert counters.totals == [0]


@pytest.mark.parametrize("slices", [1, 2, 4, 8])
def test_sliding_counters_bounds_hold_for_any_slice_count(slices: int) -> None:
    """With ``slices`` slices, an entry lasts at least window and at most window + a slice."""
    window = 8.0
    width = window / slices
    counters = SlidingCounters(window, fields=1, slices=slices)
    counters.add(96.0 + width / 2, 0)  # mid-slice (96 is a slice boundary)
    counters.advance(96.0 + width / 2 + window)
    assert counters.totals == [1]
    counters.advance(96.0 + width + window)
    assert counters.totals == [0]
