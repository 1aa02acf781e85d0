"""AdaptiveThrottle: the SRE formula against a list model, and the policy's shells.

As in the breaker's model test, times are multiples of 1/8 s and slices 0.25 s wide, so the rule
"an entry counts until its slice has fully left the window" is exact.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resilience import (
    AdaptiveConcurrency,
    AdaptiveThrottle,
    AimdLimit,
    ConcurrencyLimitedError,
    Pipeline,
    RejectedError,
    Throttled,
    ThrottledError,
)
from resilience._adaptive.throttle import ThrottleCore
from resilience.testing import EventRecorder, FakeClock
from tests.conftest import REJECTIONS, Colour, Script

WINDOW, SLICES = 2.5, 10
SLICE = WINDOW / SLICES


def live(entries: list[float], now: float) -> int:
    current = math.floor(now / SLICE)
    return sum(1 for t in entries if current - math.floor(t / SLICE) <= SLICES)


steps = st.lists(
    st.tuples(
        st.sampled_from(["call"] * 5 + ["accept"] * 3 + ["advance"] * 2),
        st.floats(0.0, 0.999),
        st.sampled_from([1, 2, 4, 8, 20]),
    ),
    min_size=10,
    max_size=120,
)


@settings(max_examples=200, deadline=None)
@given(steps, st.sampled_from([1.0, 1.1, 2.0, 3.0]))
def test_throttle_core_matches_the_formula_over_a_list(
    operations: list[tuple[str, float, int]], k: float
) -> None:
    """Every refusal decision is max(0, (requests - k accepts) / (requests + 1)) vs the draw."""
    core = ThrottleCore(k, WINDOW)
    now = 1000.0
    requests: list[float] = []
    accepts: list[float] = []
    for operation, draw, eighths in operations:
        if operation == "advance":
            now += eighths / 8
        elif operation == "accept":
            core.accepted(now)
            accepts.append(now)
        else:
            r, a = live(requests, now), live(accepts, now)
            p = max(0.0, (r - k * a) / (r + 1))
            assert core.probability(now) == p
            assert core.admit(now, draw) == (p if draw < p else 0.0)
            requests.append(now)
        assert core.counts(now) == (live(requests, now), live(accepts, now))


def test_throttle_core_lets_a_trickle_through_an_outage_and_recovers() -> None:
    """With no accepts the probability nears 1 but stays below; accepts bring it back to 0."""
    core = ThrottleCore(2.0, 10.0)
    rng = random.Random(7)
    sent = sum(1 for i in range(1000) if not core.admit(i * 0.001, rng.random()))
    assert 0.9 < core.probability(1.0) < 1.0
    assert 1 <= sent < 60  # a trickle: enough to notice recovery
    for i in range(600):
        core.accepted(1.0 + i * 0.001)
    assert core.probability(1.6) == 0.0


def test_throttle_refuses_locally_with_the_error_and_the_event(
    colour: Colour, clock: FakeClock, script: type[Script]
) -> None:
    """Once the backend refuses everything, calls fail with ThrottledError without running."""
    throttle = AdaptiveThrottle(k=2.0, window=10.0, clock=clock, rng=random.Random(3), name="db")
    backend = script([ConnectionError("refused")])
    guarded = colour.wrap(throttle, backend)
    recorder = EventRecorder()
    errors: list[ThrottledError] = []
    with recorder:
        for _ in range(200):
            try:
                guarded()
            except ThrottledError as error:
                errors.append(error)
            except ConnectionError:
                pass
    refused = len(errors)
    assert all(error.name == "db" and 0.5 < error.probability < 1.0 for error in errors[5:])
    assert backend.calls + refused == 200
    assert refused > 150 and throttle.refusals == refused
    assert len(recorder.of(Throttled)) == refused
    assert throttle.probability > 0.9


def test_throttle_counts_results_the_backend_refused(colour: Colour, clock: FakeClock) -> None:
    """A result matching ``on_result`` is not an accept; others are."""
    throttle = AdaptiveThrottle(
        on_result=lambda status: status == 503, clock=clock, rng=random.Random(1)
    )
    guarded = colour.wrap(throttle, lambda status: status)
    for _ in range(10):
        guarded(200)
    assert throttle._core.counts(clock.now()) == (10, 10)
    for _ in range(5):
        guarded(503)
    assert throttle._core.counts(clock.now()) == (15, 10)


def test_exceptions_outside_on_count_as_accepts(colour: Colour, clock: FakeClock) -> None:
    """An application error the backend answered with is an accept when not in ``on``."""
    throttle = AdaptiveThrottle(on=TimeoutError, clock=clock)

    def lookup() -> None:
        raise KeyError("missing")

    guarded = colour.wrap(throttle, lookup)
    for _ in range(4):
        with pytest.raises(KeyError):
            guarded()
    assert throttle._core.counts(clock.now()) == (4, 4)
    assert throttle.probability == 0.0


def test_a_raising_predicate_counts_a_refusal(clock: FakeClock) -> None:
    """A predicate that raises is logged and counts as a refusal by the backend."""
    throttle = AdaptiveThrottle(on_result=lambda _: 1 / 0, clock=clock)
    assert throttle(lambda: "ok")() == "ok"
    assert throttle._core.counts(clock.now()) == (1, 0)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"k": 0.5}, ValueError, "k must be a finite number >= 1, got 0.5"),
        ({"k": "2"}, TypeError, "k must be a number >= 1, got '2'"),
        ({"window": 0}, ValueError, "window must be a finite number of seconds > 0, got 0"),
        ({"on_result": 3}, TypeError, "on_result must be a predicate"),
        ({"on": 3}, TypeError, "on must be an exception class"),
        ({"name": ""}, ValueError, "name must be a non-empty string"),
        ({"rng": 4}, TypeError, "rng must be a random.Random or None, got 4"),
    ],
)
def test_bad_settings_fail_at_construction(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    """Each bad setting raises at construction, naming the parameter and the value."""
    with pytest.raises(error) as raised:
        AdaptiveThrottle(**kwargs)  # type: ignore[arg-type]
    assert message in str(raised.value)


def test_throttled_error_pickles_with_its_data() -> None:
    """The rejection carries the throttle's name and probability through pickling."""
    import pickle

    copy = pickle.loads(pickle.dumps(ThrottledError("db", 0.75)))
    assert (copy.name, copy.probability) == ("db", 0.75)
    assert "75%" in str(copy)


def test_replace_gives_a_fresh_throttle_and_the_name_defaults_to_the_kind() -> None:
    """``replace`` keeps the settings with empty counts; an unnamed throttle is named by kind."""
    clock = FakeClock()
    throttle = AdaptiveThrottle(k=1.5, window=5.0, clock=clock)
    throttle._core.accepted(0.0)
    copy = throttle.replace(name="b")
    assert (copy.k, copy.window, copy.name) == (1.5, 5.0, "b")
    assert copy._core.counts(0.0) == (0, 0)
    assert throttle.name == "adaptive_throttle"


def test_withdraw_uncounts_the_request_from_the_slice_it_went_into() -> None:
    """``withdraw(admitted_at)`` takes the request back from its own slice, even when the
    window moved on since; once that slice has left the window there is nothing to take."""
    core = ThrottleCore(2.0, WINDOW)
    core.admit(1000.0, 0.99)
    core.admit(1000.0, 0.99)
    core.withdraw(1000.0)
    assert core.counts(1000.0) == (1, 0)
    core.admit(1001.0, 0.99)
    core.withdraw(1000.0)  # four slices later, from the slice it went into
    assert core.counts(1001.0) == (1, 0)
    assert core.counts(1000.0 + WINDOW + SLICE) == (1, 0)  # the 1001.0 request is left
    core.withdraw(1000.0)  # long gone: nothing to take back, the totals stay whole
    assert core.counts(1001.0 + WINDOW + SLICE) == (0, 0)
    core.withdraw(1001.0)
    assert core.counts(1001.0 + WINDOW + SLICE) == (0, 0)


@pytest.mark.parametrize("rejection", REJECTIONS.values(), ids=list(REJECTIONS))
def test_a_rejection_from_inside_is_no_outcome(
    colour: Colour, clock: FakeClock, rejection: Callable[[], Exception]
) -> None:
    """A RejectedError raised inside the throttle is neither a request nor an accept, even
    when ``on`` names every exception."""
    throttle = AdaptiveThrottle(on=Exception, clock=clock, rng=random.Random(2))

    def refused() -> None:
        raise rejection()

    guarded = colour.wrap(throttle, refused)
    for _ in range(20):
        with pytest.raises(RejectedError):
            guarded()
    assert throttle._core.counts(clock.now()) == (0, 0)
    assert throttle.probability == 0.0 and throttle.refusals == 0


def test_limiter_refusals_inside_do_not_throttle_a_healthy_backend(
    colour: Colour, clock: FakeClock
) -> None:
    """The documented order ``Pipeline(AdaptiveThrottle(), AdaptiveConcurrency(...))``: 50
    refusals by the limiter are no backend rejections, so afterwards none of 100 calls to the
    healthy backend is refused locally (the audit measured 95 of 100 before)."""
    throttle = AdaptiveThrottle(clock=clock, rng=random.Random(4))
    limiter = AdaptiveConcurrency(AimdLimit(initial_limit=1, max_limit=1), clock=clock)
    guarded = colour.wrap(Pipeline(throttle, limiter), lambda: "ok")
    assert guarded() == "ok"
    permit = limiter._try_acquire()  # another caller holds the only slot
    assert permit
    for _ in range(50):
        with pytest.raises(ConcurrencyLimitedError):
            guarded()
    assert throttle._core.counts(clock.now()) == (1, 1)
    assert throttle.probability == 0.0
    limiter._release()
    assert [guarded() for _ in range(100)] == ["ok"] * 100
    assert throttle.refusals == 0 and limiter.in_flight == 0
