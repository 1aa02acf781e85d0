"""RetryBudget: retries capped at ratio x first attempts plus a floor, over a sliding window."""

from __future__ import annotations

import math
import threading

import pytest

from resilience import Backoff, Retry, RetryBudget, RetryBudgetExhausted, RetryGaveUp
from resilience.testing import EventRecorder, FakeClock
from tests.conftest import Colour, Script

NO_WAIT = Backoff(initial=0.0, maximum=0.0)


def test_budget_math_is_exact(clock: FakeClock) -> None:
    """With ratio 0.5 and no floor, 10 first attempts allow exactly 5 retries."""
    budget = RetryBudget(ratio=0.5, min_retries_per_second=0.0, clock=clock)
    for _ in range(10):
        budget.record_attempt()
    assert budget.available() == 5
    assert [budget.try_spend() for _ in range(6)] == [True] * 5 + [False]
    assert budget.available() == 0


def test_budget_math_is_exact_through_retry(colour: Colour, clock: FakeClock) -> None:
    """Nine successes then a failing call (10 first attempts at ratio 0.5) give 5 retries."""
    budget = RetryBudget(ratio=0.5, min_retries_per_second=0.0, clock=clock)
    healthy = colour.wrap(Retry(3, backoff=NO_WAIT, budget=budget, clock=clock), Script(["ok"]))
    for _ in range(9):
        assert healthy() == "ok"
    failing = Script([ConnectionError("down")])
    with pytest.raises(ConnectionError):
        colour.wrap(Retry(50, backoff=NO_WAIT, budget=budget, clock=clock), failing)()
    assert failing.calls == 1 + 5


@pytest.mark.parametrize(("ratio", "attempts", "retries"), [(0.29, 100, 29), (0.57, 100, 57)])
def test_whole_retries_survive_float_rounding(
    clock: FakeClock, ratio: float, attempts: int, retries: int
) -> None:
    """ratio x first attempts that is whole on paper (0.29 x 100) allows exactly that many."""
    assert ratio * attempts < retries  # the float product lands just below the whole number
    budget = RetryBudget(ratio=ratio, min_retries_per_second=0.0, clock=clock)
    for _ in range(attempts):
        budget.record_attempt()
    assert budget.available() == retries
    assert sum(budget.try_spend() for _ in range(retries + 5)) == retries


def test_the_floor_allows_retries_without_traffic(clock: FakeClock) -> None:
    """``min_retries_per_second * window`` retries are allowed even with no first attempts."""
    budget = RetryBudget(ratio=0.0, min_retries_per_second=0.5, window=4.0, clock=clock)
    assert budget.available() == 2
    assert [budget.try_spend() for _ in range(3)] == [True, True, False]


def test_the_floor_and_the_ratio_add_up(clock: FakeClock) -> None:
    """The allowance is ratio x first attempts plus the floor over the window."""
    budget = RetryBudget(ratio=0.2, min_retries_per_second=0.1, window=10.0, clock=clock)
    for _ in range(10):
        budget.record_attempt()
    assert budget.available() == 3  # 0.2 x 10 + 0.1 x 10


def test_available_reports_without_spending(clock: FakeClock) -> None:
    """``available()`` only looks, and a refused ``try_spend`` takes nothing."""
    budget = RetryBudget(ratio=0.0, min_retries_per_second=0.2, window=10.0, clock=clock)
    assert [budget.available() for _ in range(3)] == [2, 2, 2]
    assert budget.try_spend() and budget.try_spend()
    assert not budget.try_spend()
    assert budget.available() == 0
    budget.record_attempt()  # ratio 0: earns nothing
    assert budget.available() == 0


def test_the_window_slides(clock: FakeClock) -> None:
    """Spent retries and earned deposits leave the budget after the window."""
    budget = RetryBudget(ratio=1.0, min_retries_per_second=0.0, window=10.0, clock=clock)
    budget.record_attempt()
    assert budget.try_spend()
    assert not budget.try_spend()
    clock.advance(5.0)
    budget.record_attempt()  # earns one more retry
    assert budget.try_spend()
    clock.advance(11.0)  # everything above is now out of the window
    assert budget.available() == 0
    budget.record_attempt()
    assert budget.available() == 1


def test_retries_return_when_spent_ones_leave_the_window(colour: Colour, clock: FakeClock) -> None:
    """A floor of one retry per window is spent, refused within the window, then back after it."""
    budget = RetryBudget(ratio=0.0, min_retries_per_second=0.1, window=10.0, clock=clock)
    script = Script([ConnectionError("down")])
    call = colour.wrap(Retry(3, backoff=NO_WAIT, budget=budget, clock=clock), script)
    outcomes = []
    for advance in [0.0, 0.0, 9.0, 2.0]:  # at 1000, 1000, 1009 (inside), 1011 (past the window)
        clock.advance(advance)
        script.calls = 0
        with pytest.raises(ConnectionError):
            call()
        outcomes.append(script.calls)
    assert outcomes == [2, 1, 1, 2]


def test_a_spent_budget_surfaces_the_failure_after_one_call(
    colour: Colour, clock: FakeClock
) -> None:
    """Once the budget is spent, a retryable failure is raised at once, with a note saying why."""
    budget = RetryBudget(ratio=0.0, min_retries_per_second=0.0, clock=clock)
    script = Script([ConnectionError("down")])
    call = colour.wrap(Retry(5, backoff=NO_WAIT, budget=budget, clock=clock, name="pay"), script)
    with EventRecorder() as recorder, pytest.raises(ConnectionError, match="down") as caught:
        call()
    assert script.calls == 1
    assert type(caught.value) is ConnectionError
    assert caught.value.__notes__ == [
        "resilience: Retry 'pay' gave up after attempt 1 of 5 (retry budget spent)"
    ]
    assert [(e.policy, e.attempt) for e in recorder.of(RetryBudgetExhausted)] == [("pay", 1)]
    assert [e.why for e in recorder.of(RetryGaveUp)] == ["budget"]


def test_a_spent_budget_returns_the_result_after_one_call(colour: Colour, clock: FakeClock) -> None:
    """With ``on_result``, a spent budget returns the first rejected result at once."""
    budget = RetryBudget(ratio=0.0, min_retries_per_second=0.0, clock=clock)
    script = Script(["pending", "done"])
    retry = Retry(
        5, on_result=lambda v: v == "pending", backoff=NO_WAIT, budget=budget, clock=clock
    )
    assert colour.wrap(retry, script)() == "pending"
    assert script.calls == 1


def test_first_attempts_always_go(colour: Colour, clock: FakeClock) -> None:
    """An empty budget never refuses a first attempt: every call runs once."""
    budget = RetryBudget(ratio=0.0, min_retries_per_second=0.0, clock=clock)
    script = Script(["ok"])
    call = colour.wrap(Retry(3, backoff=NO_WAIT, budget=budget, clock=clock), script)
    assert [call() for _ in range(5)] == ["ok"] * 5
    assert script.calls == 5


def test_retries_resume_as_first_attempts_accrue(colour: Colour, clock: FakeClock) -> None:
    """A budget spent by failures lets retries through again after successful first attempts."""
    budget = RetryBudget(ratio=0.5, min_retries_per_second=0.0, clock=clock)
    failing = Script([ConnectionError("down")])
    flaky_call = colour.wrap(Retry(3, backoff=NO_WAIT, budget=budget, clock=clock), failing)
    with pytest.raises(ConnectionError):
        flaky_call()
    assert failing.calls == 1  # 1 first attempt earns half a retry: not enough
    healthy = colour.wrap(Retry(3, budget=budget, clock=clock), Script(["ok"]))
    for _ in range(3):
        assert healthy() == "ok"  # first attempts always go, and each earns 0.5 retry
    failing.calls = 0
    with pytest.raises(ConnectionError):
        flaky_call()
    assert failing.calls == 3  # 5 first attempts x 0.5 = 2.5 retries: two more were allowed


def test_one_budget_is_shared_by_several_retry_policies(colour: Colour, clock: FakeClock) -> None:
    """Two Retry policies on one budget draw from the same pool of retries."""
    budget = RetryBudget(ratio=0.0, min_retries_per_second=0.1, window=10.0, clock=clock)
    first = Script([ConnectionError("a")])
    second = Script([ConnectionError("b")])
    with pytest.raises(ConnectionError):
        colour.wrap(Retry(3, backoff=NO_WAIT, budget=budget, clock=clock), first)()
    with pytest.raises(ConnectionError):
        colour.wrap(Retry(3, backoff=NO_WAIT, budget=budget, clock=clock), second)()
    assert first.calls == 2  # it took the single retry
    assert second.calls == 1  # nothing left for the second policy


def test_concurrent_spending_never_overdraws(clock: FakeClock) -> None:
    """Threads racing on one budget get exactly the allowed number of retries between them."""
    budget = RetryBudget(ratio=0.0, min_retries_per_second=5.0, window=10.0, clock=clock)
    barrier = threading.Barrier(8, timeout=10)
    granted: list[int] = []

    def spend() -> None:
        barrier.wait()
        granted.append(sum(budget.try_spend() for _ in range(20)))

    threads = [threading.Thread(target=spend) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(granted) == 8
    assert sum(granted) == 50


def test_replace_keeps_the_settings_but_not_the_state(clock: FakeClock) -> None:
    """``replace()`` (one per origin in the transports) starts full, with the same settings."""
    budget = RetryBudget(ratio=0.5, min_retries_per_second=0.1, window=20.0, clock=clock)
    assert budget.try_spend() and budget.try_spend()
    fresh = budget.replace()
    assert repr(fresh) == repr(budget)
    assert fresh.clock is clock
    assert (budget.available(), fresh.available()) == (0, 2)


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"ratio": 1.5}, ValueError, "ratio"),
        ({"ratio": -0.1}, ValueError, "ratio"),
        ({"ratio": math.nan}, TypeError, "ratio"),
        ({"ratio": "0.2"}, TypeError, "ratio"),
        ({"min_retries_per_second": -1.0}, ValueError, "min_retries_per_second"),
        ({"min_retries_per_second": math.inf}, ValueError, "min_retries_per_second"),
        ({"window": 0.0}, ValueError, "window"),
        ({"window": -1.0}, ValueError, "window"),
        ({"window": math.nan}, ValueError, "window"),
        ({"window": math.inf}, ValueError, "window"),
    ],
)
def test_bad_configuration_names_the_parameter(
    kwargs: dict[str, object], error: type[Exception], name: str
) -> None:
    """Invalid settings fail at construction with the right error naming the parameter."""
    with pytest.raises(error, match=name):
        RetryBudget(**kwargs)  # type: ignore[arg-type]
