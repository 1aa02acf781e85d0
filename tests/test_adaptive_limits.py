"""The concurrency-limit algorithms (AIMD, Gradient2, Vegas, the windowed wrapper) against small
reference models, and the admission core (in-flight calls, FIFO waiters) against a list-based model.

The references restate the rules in ``resilience._adaptive.limits``' and ``admission``'s
docstrings as plainly as possible: one loop per algorithm, lists for who holds and who waits.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resilience import AimdLimit, Gradient2Limit, VegasLimit, WindowedLimit
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
        (lambda: VegasLimit(probe_multiplier=0), "probe_multiplier must be >= 1, got 0"),
        (lambda: VegasLimit(max_limit=0), "max_limit must be >= 1, got 0"),
        (
            lambda: WindowedLimit(VegasLimit(), min_window=2.0, max_window=1.0),
            "max_window must be >= min_window (2.0), got 1.0",
        ),
        (lambda: WindowedLimit(VegasLimit(), min_samples=0), "min_samples must be >= 1, got 0"),
    ],
)
def test_bad_settings_fail_at_construction_naming_the_parameter(build, message: str) -> None:  # type: ignore[no-untyped-def]
    """Each bad setting raises at construction with the parameter's name and value."""
    with pytest.raises(ValueError) as raised:
        build()
    assert message in str(raised.value)


def test_copies_start_again_from_the_initial_limit() -> None:
    """``replace()`` keeps the settings and forgets the state (one algorithm per origin)."""
    for algorithm in (
        AimdLimit(initial_limit=7),
        Gradient2Limit(initial_limit=7, queue_size=1),
        VegasLimit(initial_limit=7),
    ):
        for step in range(30):
            algorithm.update(0.01 + step, 60, True, 0.0)
        assert algorithm.limit < 7
        fresh = algorithm.replace()
        assert fresh.limit == 7 and repr(fresh) == repr(algorithm)
        assert algorithm.replace(initial_limit=3).limit == 3
    windowed = WindowedLimit(VegasLimit(initial_limit=9), min_samples=2)
    assert windowed.replace().limit == 9 and windowed.replace().algorithm is not windowed.algorithm


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


# -- Vegas and the windowed wrapper --------------------------------------------------------


def vegas_reference(
    history: list[Sample], initial: int, low: int, high: int, multiplier: int, seed: int
) -> list[int]:
    """Vegas as its docstring says, with the probe jitter drawn from the same seed."""
    rng = random.Random(seed)
    limit, noload, since, limits = float(initial), 0.0, 0, []
    probe_at = rng.uniform(0.5, 1.0) * multiplier
    for rtt, in_flight, dropped in history:
        since += 1
        if since >= probe_at * limit:  # re-learn the unloaded latency from this sample
            since, probe_at, noload = 0, rng.uniform(0.5, 1.0) * multiplier, rtt
        elif rtt > 0 and (noload == 0 or rtt < noload):
            noload = rtt
        elif rtt > 0:
            step = max(1, int(math.log10(limit)))
            queue = math.ceil(limit * (1 - noload / rtt))
            if dropped:
                limit = max(low, min(high, limit - step))
            elif in_flight * 2 >= limit:
                if queue <= step:
                    limit += 6 * step
                elif queue < 3 * step:
                    limit += step
                elif queue > 6 * step:
                    limit -= step
                limit = max(low, min(high, limit))
        limits.append(int(limit))
    return limits


@settings(max_examples=200, deadline=None)
@given(
    samples,
    st.integers(1, 5),
    st.integers(0, 60),
    st.integers(0, 200),
    st.integers(1, 40),
    st.integers(0, 1000),
)
def test_vegas_matches_its_reference(
    history: list[Sample], low: int, above: int, span: int, multiplier: int, seed: int
) -> None:
    """Vegas's limit after every sample equals the reference's, probes included."""
    initial, high = low + above, low + above + span
    algorithm = VegasLimit(
        initial_limit=initial,
        min_limit=low,
        max_limit=high,
        probe_multiplier=multiplier,
        rng=random.Random(seed),
    )
    got = [algorithm.update(rtt, flight, dropped, 0.0) for rtt, flight, dropped in history]
    assert got == vegas_reference(history, initial, low, high, multiplier, seed)


def test_vegas_holds_a_small_queue_at_a_saturated_dependency() -> None:
    """With latency = unloaded x in_flight / workers past the workers, Vegas settles where an
    estimated 3-6 calls wait: a few above the 8 workers, far below its ceiling."""
    algorithm = VegasLimit(initial_limit=4, probe_multiplier=1000, rng=random.Random(1))
    for _ in range(300):
        limit = algorithm.limit
        algorithm.update(0.010 * max(1.0, limit / 8), limit, False, 0.0)
    assert 8 < algorithm.limit <= 16


@dataclass
class Recorder:
    """A limit algorithm that records what it is handed."""

    limit: int = 5
    seen: list[tuple[float, int, bool]] = field(default_factory=list)

    def update(self, rtt: float, in_flight: int, dropped: bool, now: float) -> int:
        self.seen.append((rtt, in_flight, dropped))
        return self.limit

    def replace(self, **changes: object) -> Recorder:
        return Recorder()


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([0.001, 0.01, 0.1, 0.3]),
            st.integers(1, 30),
            st.booleans(),
            st.sampled_from([0.0, 0.05, 0.25, 1.0]),
        ),
        max_size=120,
    ),
    st.sampled_from([0.1, 0.5, 1.0]),
    st.integers(1, 5),
)
def test_windowed_limit_hands_over_one_summary_per_window(
    steps: list[tuple[float, int, bool, float]], window: float, min_samples: int
) -> None:
    """Each closed window with enough samples becomes one sample: the average rtt, the largest
    in-flight count, dropped if any was; a window closes at the first sample ending
    clamp(2 x its smallest rtt, window, 2 x window) after it opened."""
    inner = Recorder()
    windowed = WindowedLimit(
        inner, min_window=window, max_window=2 * window, min_samples=min_samples
    )
    expected: list[tuple[float, int, bool]] = []
    now, due = 0.0, -math.inf
    pending: list[tuple[float, int, bool]] = []
    for rtt, in_flight, dropped, gap in steps:
        now += gap
        windowed.update(rtt, in_flight, dropped, now)
        pending.append((rtt, in_flight, dropped))
        if now >= due:
            due = now + min(max(2 * min(r for r, _, _ in pending), window), 2 * window)
            if len(pending) >= min_samples:
                expected.append(
                    (
                        sum(r for r, _, _ in pending) / len(pending),
                        max(f for _, f, _ in pending),
                        any(d for _, _, d in pending),
                    )
                )
            pending = []
    assert [(pytest.approx(r), f, d) for r, f, d in inner.seen] == expected
    assert windowed.limit == inner.limit
