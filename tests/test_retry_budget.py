"""RetryBudget: retries capped at ratio x first attempts plus a floor, over a sliding window."""

from __future__ import annotations

import pytest

from resilience import Backoff, Retry, RetryBudget, RetryBudgetExhausted
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


def test_the_floor_allows_retries_without_traffic(clock: FakeClock) -> None:
    """``min_retries_per_second * window`` retries are allowed even with no first attempts."""
    budget = RetryBudget(ratio=0.0, min_retries_per_second=0.5, window=4.0, clock=clock)
    assert budget.available() == 2
    assert [budget.try_spend() for _ in range(3)] == [True, True, False]


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


def test_a_spent_budget_surfaces_the_failure_after_one_call(
    colour: Colour, clock: FakeClock
) -> None:
    """Once the budget is spent, a retryable failure is raised at once, with a note saying why."""
    budget = RetryBudget(ratio=0.0, min_retries_per_second=0.0, clock=clock)
    script = Script([ConnectionError("down")])
    call = colour.wrap(Retry(5, backoff=NO_WAIT, budget=budget, clock=clock), script)
    with EventRecorder() as recorder, pytest.raises(ConnectionError) as caught:
        call()
    assert script.calls == 1
    assert "retry budget spent" in caught.value.__notes__[-1]
    assert [event.attempt for event in recorder.of(RetryBudgetExhausted)] == [1]


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


def test_one_budget_is_shared_by_several_retry_policies(clock: FakeClock) -> None:
    """Two Retry policies on one budget draw from the same pool of retries."""
    budget = RetryBudget(ratio=0.0, min_retries_per_second=0.1, window=10.0, clock=clock)
    first = Script([ConnectionError("a")])
    second = Script([ConnectionError("b")])
    with pytest.raises(ConnectionError):
        Retry(3, backoff=NO_WAIT, budget=budget, clock=clock)(first)()
    with pytest.raises(ConnectionError):
        Retry(3, backoff=NO_WAIT, budget=budget, clock=clock)(second)()
    assert first.calls == 2  # it took the single retry
    assert second.calls == 1  # nothing left for the second policy


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"ratio": 1.5}, "ratio"),
        ({"ratio": -0.1}, "ratio"),
        ({"min_retries_per_second": -1.0}, "min_retries_per_second"),
        ({"window": 0.0}, "window"),
    ],
)
def test_bad_configuration_names_the_parameter(kwargs: dict[str, float], name: str) -> None:
    """Invalid settings fail at construction with a ValueError naming the parameter."""
    with pytest.raises(ValueError, match=name):
        RetryBudget(**kwargs)
