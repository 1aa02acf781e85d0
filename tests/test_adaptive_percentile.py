"""The latency percentile tracker against a sorted list of the samples in its window."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resilience._adaptive.percentile import GROWTH, LOW, LatencyPercentile, parse_percentile

WINDOW, SLICES = 2.5, 10
SLICE = WINDOW / SLICES

steps = st.lists(
    st.tuples(
        st.sampled_from(["add"] * 6 + ["advance", "read"]),
        st.floats(1e-5, 50.0),
        st.sampled_from([1, 2, 4, 8, 20]),
    ),
    min_size=5,
    max_size=150,
)


@settings(max_examples=200, deadline=None)
@given(steps, st.sampled_from([0.5, 0.9, 0.95, 0.99, 0.999]), st.integers(1, 10))
def test_percentile_brackets_the_exact_one(
    operations: list[tuple[str, float, int]], quantile: float, warmup: int
) -> None:
    """The value is None under ``warmup`` samples, else within [exact, exact * 1.05]."""
    tracker = LatencyPercentile(quantile, window=WINDOW, warmup=warmup)
    now = 1000.0
    added: list[tuple[float, float]] = []
    for operation, latency, eighths in operations:
        if operation == "add":
            tracker.add(latency, now)
            added.append((now, latency))
        elif operation == "advance":
            now += eighths / 8
        current = math.floor(now / SLICE)
        window = sorted(x for t, x in added if current - math.floor(t / SLICE) <= SLICES)
        value = tracker.value(now)
        assert tracker.samples(now) == len(window)
        if len(window) < warmup:
            assert value is None
            continue
        exact = max(LOW, window[math.ceil(quantile * len(window) - 1e-9) - 1])
        assert value is not None
        assert exact * (1 - 1e-9) <= value <= exact * GROWTH * (1 + 1e-9)


def test_floor_and_tail() -> None:
    """A 5 % slow tail puts p95 at the top of the fast body, and ``floor`` bounds it below."""
    tracker = LatencyPercentile(0.95, window=10.0, warmup=20, floor=0.002)
    for i in range(1000):
        tracker.add(1.0 if i % 20 == 0 else 0.010 + (i % 7) * 0.001, 5.0)
    value = tracker.value(5.0)
    assert value is not None and 0.016 <= value <= 0.016 * GROWTH
    fast = LatencyPercentile(0.95, window=10.0, warmup=1, floor=0.002)
    fast.add(0.0005, 5.0)
    assert fast.value(5.0) == 0.002


def test_any_float_is_counted_without_raising() -> None:
    """NaN, negatives, zero and infinity land in the end buckets; none raises."""
    tracker = LatencyPercentile(0.5, warmup=1)
    for latency in (math.nan, -1.0, 0.0, math.inf, 1e308):
        tracker.add(latency, 0.0)
    assert tracker.samples(0.0) == 5 and tracker.value(0.0) is not None


def test_old_samples_leave_the_window() -> None:
    """After a latency shift, the value follows once the old samples have left."""
    tracker = LatencyPercentile(0.5, window=1.0, warmup=1)
    tracker.add(0.010, 0.0)
    tracker.add(0.030, 1.5)
    value = tracker.value(1.5)
    assert value is not None and 0.030 <= value <= 0.030 * GROWTH


@pytest.mark.parametrize(
    ("spec", "quantile"), [("p95", 0.95), ("p99", 0.99), ("p99.9", 0.999), ("p50", 0.5)]
)
def test_parse_percentile(spec: str, quantile: float) -> None:
    """``"pNN"`` and ``"pNN.N"`` parse to the quantile."""
    assert parse_percentile(spec, "delay") == quantile


@pytest.mark.parametrize("spec", ["95", "p100", "p0", "P95", "p95.12345", "p", 0.95, None])
def test_parse_percentile_rejects_anything_else(spec: object) -> None:
    """Anything but "pNN" in (p0, p100) is an error naming the parameter."""
    with pytest.raises(ValueError, match="delay must be seconds or a percentile"):
        parse_percentile(spec, "delay")
