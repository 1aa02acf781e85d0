"""The concurrency-limit algorithms (AIMD, Gradient2) against small reference models, and the
admission core (in-flight calls, FIFO waiters) against a list-based model.

The references restate the rules in ``resilience._adaptive.limits``' and ``admission``'s
docstrings as plainly as possible: one loop per algorithm, lists for who holds and who waits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resilience import AimdLimit, Gradient2Limit
from resilience._adaptive.admission import Admission, Waiter

Sample = tuple[float, int, bool]  # (rtt, in_flight, dropped)

samples = st.lists(
    st.tuples(
        st.sampled_from([0.0, 0.001, 0.01, 0.02, 0.05, 0.1, 0.5, 2.0]),
        st.integers(1, 60),
        st.booleans() | st.just(False),
    ),
    min_size=1,
    max_size=120,
)


def aimd_reference(
    history: list[Sample], initial: int, low: int, high: int, ratio: float, timeout: float | None
) -> list[int]:
    """AIMD as its docstring says: the limit after each sample."""
    limit, limits = initial, []
    for rtt, in_flight, dropped in history:
        if dropped or (timeout is not None and rtt >= timeout):
            limit = max(low, min(limit - 1, math.floor(limit * ratio)))
        elif in_flight * 2 >= limit:
            limit = min(high, limit + 1)
        limits.append(limit)
    return limits


@settings(max_examples=200, deadline=None)
@given(
    samples,
    st.integers(1, 5),
    st.integers(0, 40),
    st.integers(0, 100),
    st.sampled_from([0.5, 0.75, 0.9, 0.99]),
    st.sampled_from([None, 0.05, 0.5]),
)
def test_aimd_matches_its_reference(
    history: list[Sample], low: int, above: int, span: int, ratio: float, timeout: float | None
) -> None:
    """AIMD's limit after every sample equals the reference's, whatever the sequence."""
    high = low + above + span
    initial = low + above
    algorithm = AimdLimit(
        initial_limit=initial, min_limit=low, max_limit=high, backoff_ratio=ratio, timeout=timeout
    )
    got = [
        algorithm.update(rtt, flight, dropped, float(i))
        for i, (rtt, flight, dropped) in enumerate(history)
    ]
    assert got == aimd_reference(history, initial, low, high, ratio, timeout)
    assert all(low <= limit <= high for limit in got)


def gradient2_reference(
    history: list[Sample],
    initial: int,
    low: int,
    high: int,
    queue: int,
    smoothing: float,
    window: int,
    warmup: int,
) -> tuple[list[int], float]:
    """Gradient2 as its docstring says: the limit after each sample, and the final long RTT."""
    long, seen, estimate, limits = 0.0, 0, float(initial), []
    for rtt, in_flight, dropped in history:
        if seen < warmup:
            seen += 1
            long += (rtt - long) / seen  # the running mean while warming up
        else:
            long += (rtt - long) * (2.0 / (window + 1))  # an EMA spanning ``window`` samples
        if rtt > 0 and long > 2 * rtt:
            long *= 0.9
        if dropped or in_flight * 2 >= estimate:
            if dropped:
                gradient = 0.5
            elif rtt <= 0:
                gradient = 1.0
            else:
                gradient = max(0.5, min(1.0, long / rtt))
            estimate += smoothing * (estimate * gradient + queue - estimate)
            estimate = max(low, min(high, estimate))
        limits.append(int(estimate))
    return limits, long


@settings(max_examples=150, deadline=None)
@given(
    samples,
    st.integers(1, 5),
    st.integers(0, 40),
    st.integers(0, 100),
    st.integers(0, 6),
    st.sampled_from([0.1, 0.2, 0.5, 1.0]),
    st.integers(1, 30),
    st.integers(1, 12),
)
def test_gradient2_matches_its_reference(
    history: list[Sample],
    low: int,
    above: int,
    span: int,
    queue: int,
    smoothing: float,
    window: int,
    warmup: int,
) -> None:
    """Gradient2's limit after every sample, and its long-term latency, are the reference's."""
    initial, high = low + above, low + above + span
    algorithm = Gradient2Limit(
        initial_limit=initial,
        min_limit=low,
        max_limit=high,
        queue_size=queue,
        smoothing=smoothing,
        long_window=window,
        warmup=warmup,
    )
    expected, long = gradient2_reference(
        history, initial, low, high, queue, smoothing, window, warmup
    )
    got = [algorithm.update(rtt, flight, dropped, 0.0) for rtt, flight, dropped in history]
    assert got == expected
    assert algorithm.long_rtt == long


def test_gradient2_grows_while_latency_holds_and_shrinks_when_it_doubles() -> None:
    """Steady latency at full use grows the limit; doubled latency halves the growth target."""
    algorithm = Gradient2Limit(initial_limit=10, queue_size=4, smoothing=0.5, warmup=5)
    for _ in range(20):
        algorithm.update(0.010, algorithm.limit, False, 0.0)
    grown = algorithm.limit
    assert grown > 10
    for _ in range(10):
        algorithm.update(0.040, algorithm.limit, False, 0.0)
    assert algorithm.limit < grown


def test_gradient2_does_not_grow_while_the_caller_uses_under_half() -> None:
    """Few calls in flight say nothing about the dependency: the limit stays put."""
    algorithm = Gradient2Limit(initial_limit=20)
    for _ in range(50):
        assert algorithm.update(0.010, 3, False, 0.0) == 20


def test_gradient2_drop_lowers_the_limit_even_when_fast() -> None:
    """A fast refusal is the steepest gradient, not a sign of a fast dependency."""
    algorithm = Gradient2Limit(initial_limit=40, queue_size=0, smoothing=1.0)
    assert algorithm.update(0.0001, 1, True, 0.0) == 20


def test_aimd_timeout_turns_a_slow_success_into_a_drop() -> None:
    """With ``timeout`` set, a success at least that slow shrinks the limit."""
    algorithm = AimdLimit(initial_limit=20, backoff_ratio=0.5, timeout=0.1)
    assert algorithm.update(0.1, 20, False, 0.0) == 10
    assert algorithm.update(0.05, 10, False, 0.0) == 11


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: AimdLimit(initial_limit=0), "initial_limit must be >= 1, got 0"),
        (lambda: AimdLimit(min_limit=5, max_limit=4), "max_limit must be >= min_limit (5), got 4"),
        (lambda: AimdLimit(initial_limit=300), "initial_limit must be in [min_limit, max_limit]"),
        (lambda: AimdLimit(backoff_ratio=1.0), "backoff_ratio must be in [0.5, 1.0), got 1.0"),
        (lambda: AimdLimit(timeout=0.0), "timeout must be a finite number of seconds > 0"),
        (lambda: Gradient2Limit(smoothing=0.0), "smoothing must be in (0, 1], got 0.0"),
        (lambda: Gradient2Limit(queue_size=-1), "queue_size must be >= 0, got -1"),
        (lambda: Gradient2Limit(long_window=0), "long_window must be >= 1, got 0"),
    ],
)
def test_bad_settings_fail_at_construction_naming_the_parameter(build, message: str) -> None:  # type: ignore[no-untyped-def]
    """Each bad setting raises at construction with the parameter's name and value."""
    with pytest.raises(ValueError) as raised:
        build()
    assert message in str(raised.value)


def test_copies_start_again_from_the_initial_limit() -> None:
    """``replace()`` keeps the settings and forgets the state (one algorithm per origin)."""
    for algorithm in (AimdLimit(initial_limit=7), Gradient2Limit(initial_limit=7, queue_size=1)):
        for _ in range(30):
            algorithm.update(0.01, 60, True, 0.0)
        assert algorithm.limit < 7
        fresh = algorithm.replace()
        assert fresh.limit == 7 and repr(fresh) == repr(algorithm)
        assert algorithm.replace(initial_limit=3).limit == 3


# -- admission: in-flight calls and the FIFO of waiters --------------------------------------


@dataclass
class AdmissionModel:
    """The admission rules with lists: who holds a slot, who waits, in what order."""

    max_waiting: int
    limit: int
    holding: list[int] = field(default_factory=list)  # permits of calls in flight
    queue: list[int] = field(default_factory=list)  # waiter ids, oldest first
    granted: dict[int, int] = field(default_factory=dict)  # waiter id -> permit

    def hand_out(self) -> list[int]:
        woken = []
        while self.queue and len(self.holding) < self.limit:
            waiter = self.queue.pop(0)
            self.holding.append(len(self.holding) + 1)
            self.granted[waiter] = len(self.holding)
            woken.append(waiter)
        return woken


operations = st.lists(
    st.tuples(
        st.sampled_from(
            ["acquire"] * 4 + ["enqueue"] * 3 + ["sample", "drop", "release", "abandon"]
        ),
        st.integers(0, 7),
    ),
    min_size=10,
    max_size=80,
)


@settings(max_examples=200, deadline=None)
@given(operations, st.integers(0, 3))
def test_admission_matches_its_model(steps: list[tuple[str, int]], max_waiting: int) -> None:
    """Admissions, refusals, hand-outs and their order match the list model; none is lost."""
    algorithm = AimdLimit(initial_limit=3, max_limit=6, backoff_ratio=0.5)
    mirror = AimdLimit(initial_limit=3, max_limit=6, backoff_ratio=0.5)
    core = Admission(algorithm, max_waiting)
    model = AdmissionModel(max_waiting, mirror.limit)
    held: list[int] = []  # permits the core gave out, in the order they were given
    waiters: dict[int, Waiter] = {}
    woken_ids: list[int] = []
    next_id = 0

    def woke(waiter_id: int) -> None:
        woken_ids.append(waiter_id)

    for operation, index in steps:
        if operation == "acquire":
            permit = core.try_acquire()
            if model.queue or len(model.holding) >= model.limit:
                assert permit == 0
            else:
                model.holding.append(len(model.holding) + 1)
                assert permit == len(model.holding)
                held.append(permit)
        elif operation == "enqueue":
            waiter_id, next_id = next_id, next_id + 1
            waiter = Waiter(lambda waiter_id=waiter_id: woke(waiter_id))  # type: ignore[misc]
            queued = core.enqueue(waiter)
            if not model.queue and len(model.holding) < model.limit:
                assert queued and waiter.granted == len(model.holding) + 1
                model.holding.append(waiter.granted)
                held.append(waiter.granted)
            elif len(model.queue) >= max_waiting:
                assert not queued
            else:
                assert queued and not waiter.granted
                model.queue.append(waiter_id)
                waiters[waiter_id] = waiter
        elif operation in ("sample", "drop", "release") and held:
            permit = held.pop(index % len(held))
            model.holding.pop()
            if operation == "release":
                woken = core.release()
            else:
                woken = core.record(permit, 0.01, operation == "drop", 0.0)
                model.limit = mirror.update(0.01, permit, operation == "drop", 0.0)
            expected = model.hand_out()
            assert [w.granted for w in woken] == [model.granted[i] for i in expected]
            for waiter_id in expected:
                waiters[waiter_id].wake()
                held.append(model.granted[waiter_id])
            assert woken_ids[-len(expected) :] == expected if expected else True
        elif operation == "abandon" and model.queue:
            waiter_id = model.queue.pop(index % len(model.queue))
            assert core.abandon(waiters.pop(waiter_id)) == 0
        assert core.in_flight == len(model.holding) == len(held)
        assert core.limit == model.limit
        assert len(core.waiters) == len(model.queue)


def test_a_granted_waiter_that_abandons_keeps_its_permit() -> None:
    """``abandon`` after a hand-out returns the permit, which the waiter must pass on."""
    core = Admission(AimdLimit(initial_limit=1), max_waiting=1)
    first = core.try_acquire()
    waiter = Waiter(lambda: None)
    assert core.enqueue(waiter) and not waiter.granted
    assert core.record(first, 0.01, False, 0.0) == [waiter]
    assert core.abandon(waiter) == waiter.granted == 1
    assert core.release() == [] and core.in_flight == 0
