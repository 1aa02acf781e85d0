"""Backoff: delay bounds for each jitter mode, repeatability, and validation."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resilience import Backoff

initials = st.floats(min_value=0.001, max_value=5.0)
multipliers = st.floats(min_value=1.0, max_value=4.0)
retries = st.integers(min_value=1, max_value=80)


def ceiling(initial: float, maximum: float, multiplier: float, retry: int) -> float:
    return min(maximum, initial * multiplier ** (retry - 1))


@given(initials, st.floats(min_value=0.0, max_value=60.0), multipliers, retries, st.integers())
def test_full_jitter_stays_within_zero_and_the_ceiling(
    initial: float, extra: float, multiplier: float, retry: int, seed: int
) -> None:
    """Full jitter draws from [0, min(maximum, initial * multiplier ** (n - 1))]."""
    backoff = Backoff(initial, initial + extra, multiplier, rng=random.Random(seed))
    delay = backoff.delay(retry)
    assert 0.0 <= delay <= ceiling(initial, initial + extra, multiplier, retry)


@given(initials, st.floats(min_value=0.0, max_value=60.0), multipliers, retries, st.integers())
def test_equal_jitter_stays_in_the_upper_half(
    initial: float, extra: float, multiplier: float, retry: int, seed: int
) -> None:
    """Equal jitter draws from [ceiling / 2, ceiling]."""
    backoff = Backoff(initial, initial + extra, multiplier, "equal", rng=random.Random(seed))
    top = ceiling(initial, initial + extra, multiplier, retry)
    assert top / 2 <= backoff.delay(retry) <= top


@given(initials, st.floats(min_value=0.0, max_value=60.0), st.integers(), st.integers(1, 30))
def test_decorrelated_jitter_stays_between_initial_and_three_times_the_last(
    initial: float, extra: float, seed: int, count: int
) -> None:
    """Decorrelated jitter draws from [initial, min(maximum, 3 * previous)]."""
    maximum = initial + extra
    backoff = Backoff(initial, maximum, jitter="decorrelated", rng=random.Random(seed))
    previous = initial
    for retry, delay in enumerate(backoff.delays(count), start=1):
        assert initial <= delay <= max(initial, min(maximum, 3 * previous)), retry
        previous = delay


def test_no_jitter_is_exactly_the_exponential_ceiling() -> None:
    """``jitter="none"`` gives initial * multiplier ** (n - 1), capped at maximum."""
    assert list(Backoff(0.1, 1.0, 2.0, "none").delays(6)) == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


def test_same_seed_same_delays() -> None:
    """Delay draws are repeatable with a seeded generator."""
    first = list(Backoff(rng=random.Random(42)).delays(10))
    second = list(Backoff(rng=random.Random(42)).delays(10))
    assert first == second
    assert first != list(Backoff(rng=random.Random(43)).delays(10))


def test_huge_retry_numbers_do_not_overflow() -> None:
    """The ceiling saturates at maximum instead of overflowing the float."""
    backoff = Backoff(1.0, 30.0, 10.0, "none")
    assert backoff.ceiling(10_000) == 30.0
    assert backoff.delay(10_000) == 30.0


def test_backoff_is_immutable() -> None:
    """A Backoff is frozen: it may be shared between policies and threads."""
    backoff = Backoff()
    with pytest.raises(AttributeError):
        backoff.initial = 5.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"initial": -0.1}, "initial"),
        ({"initial": math.nan}, "initial"),
        ({"maximum": math.inf}, "maximum"),
        ({"initial": 2.0, "maximum": 1.0}, "maximum"),
        ({"multiplier": 0.5}, "multiplier"),
        ({"jitter": "bogus"}, "jitter"),
    ],
)
def test_bad_configuration_names_the_parameter(kwargs: dict[str, object], name: str) -> None:
    """Invalid settings fail at construction with a ValueError naming the parameter."""
    with pytest.raises(ValueError, match=name):
        Backoff(**kwargs)  # type: ignore[arg-type]
