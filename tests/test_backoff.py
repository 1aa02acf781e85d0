"""Backoff: delay bounds for each jitter mode, repeatability, overflow, copying, validation."""

from __future__ import annotations

import copy
import math
import pickle
import random

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from resilience import Backoff, Retry
from resilience.testing import FakeClock
from tests.conftest import Colour, Script

JITTERS = ["full", "equal", "decorrelated", "none"]

initials = st.floats(min_value=0.0, max_value=5.0)
extras = st.floats(min_value=0.0, max_value=60.0)
multipliers = st.floats(min_value=1.0, max_value=4.0)
retries = st.integers(min_value=1, max_value=2_000)
seeds = st.integers()


def ceiling(initial: float, maximum: float, multiplier: float, retry: int) -> float:
    """The documented ceiling, in exact-enough math that never overflows."""
    if initial == 0.0:
        return 0.0
    log_grown = math.log(initial) + (retry - 1) * math.log(multiplier)
    return maximum if log_grown >= math.log(maximum) else min(maximum, math.exp(log_grown))


def documented(initial: float, maximum: float, multiplier: float, retry: int) -> object:
    """The documented ceiling, as a tolerance for comparing with ``Backoff.ceiling``."""
    return pytest.approx(ceiling(initial, maximum, multiplier, retry), rel=1e-9, abs=1e-300)


@settings(deadline=None)
@given(initials, extras, multipliers, retries, seeds)
# The growth factor overflows a float, but a tiny initial brings the product back under the
# maximum (found by hypothesis in CI, 2026-11-29).
@example(2.2250738585072014e-308, 8.0, 2.0234375, 1009, 0)
def test_full_jitter_stays_within_zero_and_the_ceiling(
    initial: float, extra: float, multiplier: float, retry: int, seed: int
) -> None:
    """Full jitter draws from [0, min(maximum, initial * multiplier ** (n - 1))]."""
    maximum = initial + extra
    backoff = Backoff(initial, maximum, multiplier, rng=random.Random(seed))
    assert backoff.ceiling(retry) == documented(initial, maximum, multiplier, retry)
    assert 0.0 <= backoff.delay(retry) <= backoff.ceiling(retry)


@settings(deadline=None)
@given(initials, extras, multipliers, retries, seeds)
def test_equal_jitter_stays_in_the_upper_half(
    initial: float, extra: float, multiplier: float, retry: int, seed: int
) -> None:
    """Equal jitter draws from [ceiling / 2, ceiling]."""
    maximum = initial + extra
    backoff = Backoff(initial, maximum, multiplier, "equal", rng=random.Random(seed))
    top = backoff.ceiling(retry)
    assert top == documented(initial, maximum, multiplier, retry)
    assert top / 2 <= backoff.delay(retry) <= top


@settings(deadline=None)
@given(initials, extras, multipliers, st.integers(1, 40), seeds)
def test_decorrelated_jitter_stays_between_initial_and_three_times_the_last(
    initial: float, extra: float, multiplier: float, count: int, seed: int
) -> None:
    """Decorrelated jitter draws from [initial, min(maximum, 3 * previous)], previous >= initial."""
    maximum = initial + extra
    backoff = Backoff(initial, maximum, multiplier, "decorrelated", rng=random.Random(seed))
    previous = initial
    for delay in backoff.delays(count):
        assert initial <= delay <= min(maximum, 3 * previous)
        previous = delay


@settings(deadline=None)
@given(initials, extras, multipliers, retries)
def test_no_jitter_is_the_ceiling(
    initial: float, extra: float, multiplier: float, retry: int
) -> None:
    """``jitter="none"`` returns exactly the ceiling, which never exceeds maximum."""
    maximum = initial + extra
    backoff = Backoff(initial, maximum, multiplier, "none")
    assert backoff.delay(retry) == backoff.ceiling(retry) <= maximum
    assert backoff.delay(retry) == documented(initial, maximum, multiplier, retry)


def test_no_jitter_is_exactly_the_exponential_ceiling() -> None:
    """``jitter="none"`` gives initial * multiplier ** (n - 1), capped at maximum."""
    assert list(Backoff(0.1, 1.0, 2.0, "none").delays(6)) == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


@pytest.mark.parametrize("jitter", JITTERS)
def test_seeded_draws_stay_within_the_documented_bounds(jitter: str) -> None:
    """With a seeded Random, 200 draws per mode all fall inside that mode's bounds."""
    backoff = Backoff(0.5, 20.0, 3.0, jitter, rng=random.Random(2024))  # type: ignore[arg-type]
    previous = 0.5
    for retry, delay in enumerate(backoff.delays(200), start=1):
        top = min(20.0, 0.5 * 3.0 ** (retry - 1))
        low, high = {
            "full": (0.0, top),
            "equal": (top / 2, top),
            "decorrelated": (0.5, min(20.0, 3 * previous)),
            "none": (top, top),
        }[jitter]
        assert low <= delay <= high, (retry, delay)
        previous = delay


@pytest.mark.parametrize("jitter", ["full", "equal", "decorrelated"])
def test_jittered_draws_are_spread_not_constant(jitter: str) -> None:
    """Jittered delays for the same retry vary from draw to draw (the herd is spread)."""
    backoff = Backoff(1.0, 8.0, jitter=jitter, rng=random.Random(5))  # type: ignore[arg-type]
    assert len({backoff.delay(4, 2.0) for _ in range(20)}) > 10


@pytest.mark.parametrize("jitter", JITTERS)
def test_same_seed_same_delays(jitter: str) -> None:
    """Delay draws are repeatable with a seeded generator, and differ for another seed."""

    def draws(seed: int) -> list[float]:
        rng = random.Random(seed)
        return list(Backoff(0.1, 50.0, 2.0, jitter, rng=rng).delays(10))  # type: ignore[arg-type]

    assert draws(42) == draws(42)
    if jitter != "none":
        assert draws(42) != draws(43)


@pytest.mark.parametrize("jitter", JITTERS)
def test_retry_sleeps_exactly_the_seeded_delays(
    colour: Colour, clock: FakeClock, jitter: str
) -> None:
    """Through Retry, the fake clock's sleeps equal the seeded Backoff's delays, in order."""
    config = {"initial": 0.2, "maximum": 5.0, "multiplier": 2.0, "jitter": jitter}
    expected = list(Backoff(**config, rng=random.Random(11)).delays(5))  # type: ignore[arg-type]
    backoff = Backoff(**config, rng=random.Random(11))  # type: ignore[arg-type]
    with pytest.raises(ConnectionError):
        colour.wrap(Retry(6, backoff=backoff, clock=clock), Script([ConnectionError()]))()
    assert clock.sleeps == expected
    assert clock.now() == pytest.approx(1000.0 + sum(expected))


@pytest.mark.parametrize("jitter", JITTERS)
@pytest.mark.parametrize("retry", [1_100, 10**6, 10**30])
def test_huge_retry_numbers_do_not_overflow(jitter: str, retry: int) -> None:
    """The ceiling saturates at maximum instead of overflowing the float, in every mode."""
    backoff = Backoff(1.0, 30.0, 10.0, jitter, rng=random.Random(3))  # type: ignore[arg-type]
    assert backoff.ceiling(retry) == 30.0
    assert 0.0 <= backoff.delay(retry, previous=30.0) <= 30.0
    if jitter == "none":
        assert backoff.delay(retry) == 30.0


def test_a_zero_initial_stays_zero_for_huge_retry_numbers() -> None:
    """0 x a growth factor too big for a float is still 0, not maximum."""
    backoff = Backoff(0.0, 5.0, 2.0, "none")
    assert backoff.ceiling(5) == 0.0
    assert backoff.ceiling(10**6) == 0.0
    assert backoff.delay(10**6) == 0.0


@pytest.mark.parametrize("jitter", JITTERS)
def test_a_zero_delay_never_calls_sleep(colour: Colour, clock: FakeClock, jitter: str) -> None:
    """Backoff(initial=0, maximum=0) retries without a single call to the clock's sleep."""
    backoff = Backoff(initial=0, maximum=0, jitter=jitter)  # type: ignore[arg-type]
    script = Script([ConnectionError(), ConnectionError(), ConnectionError(), "ok"])
    assert colour.wrap(Retry(4, backoff=backoff, clock=clock), script)() == "ok"
    assert script.calls == 4
    assert clock.sleeps == []


def test_backoff_is_immutable() -> None:
    """A Backoff is frozen: it may be shared between policies and threads."""
    backoff = Backoff()
    with pytest.raises(AttributeError):
        backoff.initial = 5.0  # type: ignore[misc]


def test_copies_and_pickles_keep_the_settings_and_the_draws() -> None:
    """copy, deepcopy and pickle rebuild an equal Backoff whose generator continues alike."""
    backoff = Backoff(0.5, 4.0, 3.0, "equal", rng=random.Random(9))
    assert copy.copy(backoff)._rng is backoff._rng  # shallow: the same generator
    clones = [copy.deepcopy(backoff), pickle.loads(pickle.dumps(backoff))]
    expected = list(backoff.delays(5))
    for clone in clones:
        assert repr(clone) == repr(backoff)
        assert list(clone.delays(5)) == expected


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"initial": -0.1}, ValueError, "initial"),
        ({"initial": math.nan}, ValueError, "initial"),
        ({"initial": math.inf}, ValueError, "initial"),
        ({"initial": "1"}, TypeError, "initial"),
        ({"maximum": -1.0}, ValueError, "maximum"),
        ({"maximum": math.nan}, ValueError, "maximum"),
        ({"maximum": math.inf}, ValueError, "maximum"),
        ({"initial": 2.0, "maximum": 1.0}, ValueError, "maximum"),
        ({"multiplier": 0.5}, ValueError, "multiplier"),
        ({"multiplier": 0}, ValueError, "multiplier"),
        ({"multiplier": math.nan}, ValueError, "multiplier"),
        ({"multiplier": math.inf}, ValueError, "multiplier"),
        ({"multiplier": True}, TypeError, "multiplier"),
        ({"jitter": "bogus"}, ValueError, "jitter"),
        ({"jitter": None}, ValueError, "jitter"),
    ],
)
def test_bad_configuration_names_the_parameter(
    kwargs: dict[str, object], error: type[Exception], name: str
) -> None:
    """Invalid settings fail at construction with the right error naming the parameter."""
    with pytest.raises(error, match=name):
        Backoff(**kwargs)  # type: ignore[arg-type]
