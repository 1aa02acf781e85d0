"""Hedge(delay="p95"): the delay from a latency percentile, a warm-up, a floor, and a hedge
budget that refuses extra copies once they pass their share of first calls."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resilience import Hedge, HedgeSent, RetryBudget
from resilience._hedge.tracked import TrackedRace
from resilience.testing import EventRecorder, FakeClock
from tests.conftest import Colour
from tests.test_hedge import Copies, call


def answering_in(colour: Colour, clock: FakeClock, seconds: float) -> Copies:
    """One copy that takes ``seconds`` and answers "ok"."""
    return Copies(colour, clock, [("advance", seconds), ("return", "ok")])


def test_no_hedge_while_warming_up_then_the_tracked_percentile(
    colour: Colour, clock: FakeClock
) -> None:
    """Until ``warmup`` latencies are in, calls get no copy; then the delay is the p95 of
    what came before (rounded up to its 5 % bucket): a call slower than it gets a copy."""
    hedge = Hedge("p95", warmup=20, clock=clock)
    assert hedge._race()._attempts == 1  # type: ignore[attr-defined]  # warming up
    with EventRecorder() as recorder:
        for _ in range(20):
            assert call(colour, hedge, answering_in(colour, clock, 0.010)) == "ok"
        assert recorder.of(HedgeSent) == []
        delay = hedge._race()._delay  # type: ignore[attr-defined]
        assert 0.010 <= delay <= 0.010 * 1.05
        slow = Copies(
            colour, clock, [("advance", 0.02), ("hang",), ("return", "slow")], [("return", "fast")]
        )
        assert call(colour, hedge, slow) == "fast"
        slow.release()
        assert call(colour, hedge, answering_in(colour, clock, 0.005)) == "ok"
    assert len(recorder.of(HedgeSent)) == 1  # the slow call only


def test_the_delay_never_drops_under_min_delay(colour: Colour, clock: FakeClock) -> None:
    """Latencies far under ``min_delay`` still leave ``min_delay`` before a copy."""
    hedge = Hedge("p50", warmup=1, min_delay=0.2, clock=clock)
    call(colour, hedge, answering_in(colour, clock, 0.001))
    assert hedge._race()._delay == 0.2  # type: ignore[attr-defined]
    with EventRecorder() as recorder:
        assert call(colour, hedge, answering_in(colour, clock, 0.15)) == "ok"
    assert recorder.of(HedgeSent) == []


def test_the_budget_refuses_copies_past_its_share(clock: FakeClock) -> None:
    """With a budget of 1 extra copy per 10 first calls, the race of each call asks it before
    its second copy: 30 calls get 3 copies, and a refused race keeps to its first copy."""
    budget = RetryBudget(0.1, 0.0, 60.0, clock=clock, name="hedges")
    hedge = Hedge(0.05, budget=budget, clock=clock)
    granted = []
    for _ in range(30):
        race = hedge._race()
        assert isinstance(race, TrackedRace)
        assert race.may_launch()  # the first copy: always, and it earns budget
        race.launch()
        if race.step(1):  # its timer: a second copy is due
            granted.append(race.may_launch())
    assert granted.count(True) == 3 and len(granted) == 30
    assert [i for i, ok in enumerate(granted) if ok] == [9, 19, 29]


def test_a_refused_copy_after_a_failure_ends_the_race_with_the_error(
    colour: Colour, clock: FakeClock
) -> None:
    """A failed copy would start the next at once; refused by the budget, the call raises the
    failure instead of waiting for a copy that will never come."""
    budget = RetryBudget(0.0, 0.0, 60.0, clock=clock, name="none")
    hedge = Hedge(60.0, budget=budget, clock=clock)
    copies = Copies(colour, clock, [("raise", ConnectionError("down"))], [("return", "never")])
    with pytest.raises(ConnectionError, match="down"):
        call(colour, hedge, copies)
    assert copies.started == 1


def test_a_percentile_hedge_keeps_its_own_budget_of_one_minus_q(clock: FakeClock) -> None:
    """Without ``budget``, "p95" allows extra copies of 5 % of first calls."""
    hedge = Hedge("p95", clock=clock)
    budget = hedge._budget
    assert budget is not None and budget.ratio == pytest.approx(0.05)
    assert budget.min_retries_per_second == 0.0
    assert Hedge(0.1)._budget is None  # a fixed delay stays as it was


def test_replace_starts_with_fresh_latencies(clock: FakeClock) -> None:
    """A replaced percentile hedge (one per origin) has its own tracker and its own budget."""
    hedge = Hedge("p99", clock=clock, warmup=1)
    hedge._record(0.5, clock.now())
    copy = hedge.replace(name="other")
    assert copy.delay == "p99" and copy.name == "other"
    assert copy._tracker is not None and copy._tracker.samples(clock.now()) == 0
    assert copy._budget is not hedge._budget


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"delay": "p100"}, ValueError, 'delay must be seconds or a percentile "pNN"'),
        ({"delay": "fast"}, ValueError, 'delay must be seconds or a percentile "pNN"'),
        ({"delay": -1.0}, ValueError, "delay must be a finite number of seconds >= 0"),
        ({"delay": "p95", "budget": 0.05}, TypeError, "budget must be a RetryBudget or None"),
        ({"delay": "p95", "min_delay": -1}, ValueError, "min_delay must be a finite number"),
        ({"delay": "p95", "window": 0}, ValueError, "window must be a finite number of seconds"),
        ({"delay": "p95", "warmup": -1}, ValueError, "warmup must be >= 0, got -1"),
    ],
)
def test_bad_settings_fail_at_construction(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    """Each bad setting raises at construction, naming the parameter."""
    with pytest.raises(error) as raised:
        Hedge(**kwargs)  # type: ignore[arg-type]
    assert message in str(raised.value)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(["tick", "ok", "fail"]), max_size=12),
    st.integers(1, 4),
    st.integers(0, 3),
)
def test_a_tracked_race_never_outruns_its_budget_nor_hangs(
    events: list[str], attempts: int, grants: int
) -> None:
    """Fed any sequence of ticks and outcomes (as the shells feed it), a tracked race starts
    extra copies only when the budget grants one, never leaves a caller waiting on nothing
    (no copy running, none to come, not decided), and records one sample per copy started
    when a copy wins."""
    asked: list[bool] = []
    recorded: list[float] = []

    class Budget:
        def record_attempt(self) -> None:
            pass

        def try_spend(self) -> bool:
            asked.append(len(asked) < grants)
            return asked[-1]

    clock = FakeClock()
    race = TrackedRace(
        0.1,
        attempts,
        lambda v: True,
        lambda v: None,
        record=lambda latency, now: recorded.append(latency),
        budget=Budget(),  # type: ignore[arg-type]
        now=clock.now,
    )

    def start() -> None:
        if race.may_launch():
            race.launch()

    start()
    pending = 1
    for event in events:
        if race.decided:
            break
        clock.advance(0.05)
        if event == "tick":
            launch = race.step(race.launched)
        elif pending:
            pending -= 1
            launch = race.step((event == "ok", "v" if event == "ok" else ValueError()))
        else:
            continue
        if launch:
            before = race.launched
            start()
            pending += race.launched - before
        assert race.launched - 1 == asked.count(True)
        assert race.decided or race.running > 0
    if recorded:
        assert len(recorded) == race.launched


def test_a_budget_that_must_be_awaited_is_refused() -> None:
    """The race asks its budget without awaiting: one on redis.asyncio is refused at once."""
    redis = pytest.importorskip("redis")
    from resilience.stores import RedisStore

    store = RedisStore(redis.asyncio.Redis(host="127.0.0.1", port=1))  # no I/O at construction
    budget = RetryBudget(0.05, name="hedges", store=store)
    with pytest.raises(TypeError, match="budget must answer without awaiting"):
        Hedge("p95", budget=budget)
