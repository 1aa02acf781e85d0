"""RateLimiter (GCRA): exact decisions on a fake clock, a reference model, waits, validation."""

from __future__ import annotations

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from resilience import (
    Deadline,
    RateLimited,
    RateLimitedError,
    RateLimiter,
    RateLimiterCounts,
)
from resilience._gcra import GcraParams, gcra_step
from resilience.stores import MemoryStore
from resilience.testing import EventRecorder, FakeClock
from tests.conftest import Colour, Script


def test_matches_redis_cell_example(clock: FakeClock) -> None:
    """CL.THROTTLE user123 15 30 60: limit 16, remaining 15; the 17th waits 2 s."""
    limiter = RateLimiter(30, per=60.0, burst=15, clock=clock)
    first = limiter.try_acquire()
    assert (first.allowed, first.limit, first.remaining, first.reset_after) == (True, 16, 15, 2.0)
    for _ in range(15):
        assert limiter.try_acquire().allowed
    seventeenth = limiter.try_acquire()
    assert not seventeenth.allowed
    assert seventeenth.retry_after == pytest.approx(2.0)
    assert seventeenth.remaining == 0


def test_burst_then_smooth_rate(clock: FakeClock) -> None:
    """1/s with burst 4: five at once, the sixth refused for 1 s; 2.5 s later two more pass."""
    limiter = RateLimiter(1, burst=4, clock=clock)
    assert [limiter.try_acquire().allowed for _ in range(6)] == [True] * 5 + [False]
    clock.advance(2.5)
    assert [limiter.try_acquire().allowed for _ in range(3)] == [True, True, False]


def test_cost_takes_several_units(clock: FakeClock) -> None:
    """A cost of 3 uses three units of the burst; a cost of 0 only peeks."""
    limiter = RateLimiter(1, burst=4, clock=clock)
    assert limiter.try_acquire(3).remaining == 2
    assert limiter.try_acquire(0).remaining == 2
    assert not limiter.try_acquire(3).allowed
    assert limiter.try_acquire(2).allowed


class LeakyBucket:
    """The continuous-state leaky bucket (ITU-T I.371), equivalent to GCRA but computed from
    the bucket's level rather than from a theoretical arrival time."""

    def __init__(self, emission: float, burst: int) -> None:
        self.emission = emission
        self.capacity = emission * (burst + 1)  # how much the bucket may hold after a request
        self.level = 0.0
        self.last = None

    def offer(self, now: float, cost: int) -> bool:
        drained = self.level if self.last is None else max(0.0, self.level - (now - self.last))
        if drained + self.emission * cost > self.capacity + 1e-9:
            self.level, self.last = drained, now
            return False
        self.level, self.last = drained + self.emission * cost, now
        return True


@settings(max_examples=200, deadline=None)
@given(
    rate=st.integers(1, 50),
    burst=st.integers(0, 10),
    steps=st.lists(
        st.tuples(st.sampled_from([0.0, 0.01, 0.05, 0.1, 0.5, 2.0]), st.integers(0, 3)),
        min_size=1,
        max_size=60,
    ),
)
def test_gcra_agrees_with_a_leaky_bucket(
    rate: int, burst: int, steps: list[tuple[float, int]]
) -> None:
    """Random arrival sequences: every admit/refuse decision matches the leaky-bucket model."""
    clock = FakeClock()
    limiter = RateLimiter(rate, burst=burst, clock=clock)
    model = LeakyBucket(1.0 / rate, burst)
    for gap, cost in steps:
        clock.advance(gap)
        cost = min(cost, burst + 1)
        assert limiter.try_acquire(cost).allowed == model.offer(clock.now(), cost)


def test_gcra_step_is_pure() -> None:
    """The core computes a decision and the TAT to store; it keeps no state of its own."""
    params = GcraParams(emission=0.5, tolerance=1.0, limit=2)
    decision, tat = gcra_step(params, None, 10.0, 1, 0.0)
    assert (decision.allowed, tat) == (True, 10.5)
    decision, tat = gcra_step(params, 11.0, 10.0, 1, 0.0)
    assert (decision.allowed, tat, decision.retry_after) == (False, None, 0.5)


def test_waits_within_max_wait_then_goes(colour: Colour, clock: FakeClock) -> None:
    """Over the limit, a call whose slot comes within max_wait sleeps for it, then runs."""
    limiter = RateLimiter(10, burst=0, max_wait=0.25, clock=clock)
    call = colour.wrap(limiter, Script(["ok"]))
    assert call() == "ok"
    assert call() == "ok"
    assert clock.sleeps == [pytest.approx(0.1)]


def test_rejects_when_the_wait_would_be_too_long(colour: Colour, clock: FakeClock) -> None:
    """Over the limit beyond max_wait: RateLimitedError with retry_after, function not called."""
    limiter = RateLimiter(1, burst=0, max_wait=0.25, name="payments", clock=clock)
    script = Script(["ok"])
    call = colour.wrap(limiter, script)
    call()
    with EventRecorder() as recorder, pytest.raises(RateLimitedError) as caught:
        call()
    assert script.calls == 1
    assert (caught.value.name, caught.value.retry_after) == ("payments", pytest.approx(1.0))
    assert [event.policy for event in recorder.of(RateLimited)] == ["payments"]


def test_never_waits_past_the_deadline(clock: FakeClock) -> None:
    """The wait for a slot is bounded by the current deadline as well as max_wait."""
    limiter = RateLimiter(1, burst=0, max_wait=5.0, clock=clock)
    limiter.acquire()

    @Deadline(0.5, clock=clock)
    def call() -> bool:
        return limiter.acquire().allowed

    assert call() is False
    assert clock.sleeps == []


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"rate": 0}, "rate"),
        ({"rate": -1.0}, "rate"),
        ({"rate": float("inf")}, "rate"),
        ({"rate": 1, "per": 0.0}, "per"),
        ({"rate": 1, "burst": -1}, "burst"),
        ({"rate": 1, "max_wait": -0.5}, "max_wait"),
        ({"rate": 1, "name": ""}, "name"),
    ],
)
def test_bad_configuration_names_the_parameter(kwargs: dict[str, object], name: str) -> None:
    """Invalid settings fail at construction with a ValueError naming the parameter."""
    with pytest.raises(ValueError, match=name):
        RateLimiter(**kwargs)  # type: ignore[arg-type]


def test_a_cost_above_the_burst_is_refused_loudly(clock: FakeClock) -> None:
    """A cost that could never be admitted (> burst + 1) is a ValueError, not a rejection."""
    limiter = RateLimiter(5, burst=2, clock=clock)
    with pytest.raises(ValueError, match="cost"):
        limiter.try_acquire(4)
    with pytest.raises(ValueError, match="cost"):
        limiter.acquire(-1)


def test_counts_decisions_by_outcome(colour: Colour, clock: FakeClock) -> None:
    """Decorated calls and direct acquisitions are counted: at once, after a wait, refused."""
    limiter = RateLimiter(10, burst=0, max_wait=0.15, clock=clock)
    call = colour.wrap(limiter, Script(["ok", "ok", "ok"]))
    call()  # t=0: at once
    call()  # waits 0.1 s
    assert not limiter.try_acquire().allowed  # never waits: refused
    assert limiter.acquire().wait == pytest.approx(0.1)
    clock.advance(1.0)
    call()  # at once again
    assert limiter.counts == RateLimiterCounts(allowed=2, waited=2, rejected=1)
    strict = RateLimiter(1, burst=0, clock=clock)
    guarded = colour.wrap(strict, Script(["ok"]))
    guarded()
    with pytest.raises(RateLimitedError):
        guarded()
    assert strict.counts == RateLimiterCounts(allowed=1, waited=0, rejected=1)


def test_counts_lose_nothing_across_threads(clock: FakeClock) -> None:
    """Eight threads admitting 2,000 calls each: every decision is counted."""
    import threading

    limiter = RateLimiter(1e9, burst=10**6, clock=clock)
    guarded = limiter(lambda: None)

    def work() -> None:
        for _ in range(2000):
            guarded()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert limiter.counts.allowed == 16000


def test_default_burst_is_one_periods_worth(clock: FakeClock) -> None:
    """RateLimiter(100) admits 100 calls at once (what "100 per second" means), refuses the
    101st, and admits one more 10 ms later; fractional rates round down, never below one."""
    limiter = RateLimiter(100, clock=clock)
    assert [limiter.try_acquire().allowed for _ in range(101)] == [True] * 100 + [False]
    clock.advance(0.01)
    assert limiter.try_acquire().allowed
    assert (limiter.burst, RateLimiter(2.5).burst, RateLimiter(0.5).burst) == (99, 1, 0)
    assert RateLimiter(30, per=60.0).try_acquire().limit == 30


@settings(max_examples=300, deadline=None)
@example(first=("a", "a:a"), second=("a:a", "a"))
@given(
    first=st.tuples(
        st.text("a:", min_size=1, max_size=4), st.none() | st.text("a:\0", min_size=1, max_size=4)
    ),
    second=st.tuples(
        st.text("a:", min_size=1, max_size=4), st.none() | st.text("a:\0", min_size=1, max_size=4)
    ),
)
def test_distinct_limiters_and_partitions_never_share_a_bucket(
    first: tuple[str, str | None], second: tuple[str, str | None]
) -> None:
    """Two (key, partition) pairs that differ draw from different buckets of one store: limiter
    "a" with partition "a:a" and limiter "a:a" with partition "a" no longer meet."""
    assume(first != second)
    store = MemoryStore(clock=FakeClock())
    one = RateLimiter(1, per=60.0, name=first[0], store=store)
    two = RateLimiter(1, per=60.0, name=second[0], store=store)
    assert one.try_acquire(partition=first[1]).allowed
    assert two.try_acquire(partition=second[1]).allowed
    assert not one.try_acquire(partition=first[1]).allowed


def test_a_name_with_nul_is_refused() -> None:
    """NUL separates a limiter's name from its partitions in the store, so names may not hold
    it."""
    with pytest.raises(ValueError, match="name"):
        RateLimiter(1, name="a\0b")
