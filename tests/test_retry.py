"""Retry: attempt counts, what is retried, the original exception, deadlines, events, config."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any

import pytest

from resilience import (
    Backoff,
    CircuitBreaker,
    CircuitOpenError,
    Deadline,
    DeadlineExceededError,
    Pipeline,
    RejectedError,
    Retry,
    RetryBudget,
    RetryGaveUp,
    RetryScheduled,
    ThrottledError,
    Timeout,
)
from resilience.testing import EventRecorder, FakeClock
from tests.conftest import REJECTIONS, Colour, Script

NO_WAIT = Backoff(initial=0.0, maximum=0.0)
EXACT = Backoff(initial=1.0, maximum=100.0, multiplier=2.0, jitter="none")


class NoSleepClock(FakeClock):
    """A fake clock that fails the test if anything sleeps on it."""

    def sleep(self, seconds: float) -> None:
        raise AssertionError(f"slept {seconds}")

    async def sleep_async(self, seconds: float) -> None:
        raise AssertionError(f"slept {seconds}")


class Raiser:
    """Raises a new ``ConnectionError`` per call and keeps every object it raised."""

    def __init__(self) -> None:
        self.raised: list[ConnectionError] = []

    def __call__(self) -> None:
        error = ConnectionError(f"attempt {len(self.raised) + 1}")
        self.raised.append(error)
        raise error


@pytest.mark.parametrize("attempts", [1, 2, 5])
def test_attempts_count_the_first_call(colour: Colour, clock: FakeClock, attempts: int) -> None:
    """``attempts`` is the total number of calls, the first included; 1 never retries."""
    script = Script([ConnectionError("down")])
    with pytest.raises(ConnectionError):
        colour.wrap(Retry(attempts, backoff=EXACT, clock=clock), script)()
    assert script.calls == attempts
    assert len(clock.sleeps) == attempts - 1


def test_success_on_the_first_call_is_not_retried(colour: Colour, clock: FakeClock) -> None:
    """A first call that succeeds returns its value after exactly one call and no sleep."""
    script = Script(["ok", "second"])
    assert colour.wrap(Retry(3, backoff=EXACT, clock=clock), script)() == "ok"
    assert script.calls == 1
    assert clock.sleeps == []


def test_success_after_failures_returns_the_value(colour: Colour, clock: FakeClock) -> None:
    """Failures followed by a success return the success, after exactly that many calls."""
    script = Script([ConnectionError(), TimeoutError(), "paid"])
    assert colour.wrap(Retry(5, backoff=NO_WAIT, clock=clock), script)() == "paid"
    assert script.calls == 3


def test_the_original_exception_is_reraised_with_a_note(colour: Colour, clock: FakeClock) -> None:
    """When attempts run out, the original exception type surfaces, noted with the count."""
    script = Script([ConnectionError("reset by peer")])
    with pytest.raises(ConnectionError, match="reset by peer") as caught:
        colour.wrap(Retry(3, backoff=NO_WAIT, clock=clock), script)()
    assert type(caught.value) is ConnectionError
    assert caught.value.__notes__ == [
        "resilience: Retry 'retry' gave up after attempt 3 of 3 (attempts exhausted)"
    ]


def test_the_last_attempts_own_exception_object_is_raised_unchained(
    colour: Colour, clock: FakeClock
) -> None:
    """The object raised is the last attempt's own, not wrapped nor chained to earlier ones."""
    raiser = Raiser()
    with pytest.raises(ConnectionError) as caught:
        colour.wrap(Retry(3, backoff=NO_WAIT, clock=clock), raiser)()
    assert len(raiser.raised) == 3
    assert caught.value is raiser.raised[-1]
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None


def test_a_retried_call_does_not_see_the_earlier_failure_as_handled(
    colour: Colour, clock: FakeClock
) -> None:
    """Attempts after the first run outside any ``except`` block (``sys.exc_info`` is empty)."""
    seen: list[object] = []

    def behaviour() -> str:
        seen.append(sys.exc_info()[1])
        if len(seen) == 1:
            raise ConnectionError("first")
        return "ok"

    assert colour.wrap(Retry(2, backoff=NO_WAIT, clock=clock), behaviour)() == "ok"
    assert seen == [None, None]


ON_FILTERS = {
    "class": TimeoutError,
    "tuple": (ConnectionError, TimeoutError),
    "predicate": lambda exc: "retry me" in str(exc),
}


@pytest.mark.parametrize("on", ON_FILTERS.values(), ids=ON_FILTERS.keys())
def test_on_retries_matching_exceptions(colour: Colour, clock: FakeClock, on: Any) -> None:
    """``on`` as a class, a tuple or a predicate: a matching failure is retried."""
    script = Script([TimeoutError("retry me"), TimeoutError("retry me"), "ok"])
    assert colour.wrap(Retry(3, on=on, backoff=NO_WAIT, clock=clock), script)() == "ok"
    assert script.calls == 3


@pytest.mark.parametrize("on", ON_FILTERS.values(), ids=ON_FILTERS.keys())
def test_on_lets_other_exceptions_propagate_after_one_call(
    colour: Colour, clock: FakeClock, on: Any
) -> None:
    """``on`` as a class, a tuple or a predicate: a failure it rejects is raised at once."""
    script = Script([KeyError("no"), "ok"])
    with pytest.raises(KeyError) as caught:
        colour.wrap(Retry(3, on=on, backoff=EXACT, clock=clock), script)()
    assert script.calls == 1
    assert clock.sleeps == []
    assert not getattr(caught.value, "__notes__", [])


def test_a_non_matching_exception_on_a_later_attempt_stops_retrying(
    colour: Colour, clock: FakeClock
) -> None:
    """A retry that fails with an exception ``on`` rejects raises it at once, unnoted."""
    script = Script([ConnectionError("down"), ValueError("bad input"), "ok"])
    with pytest.raises(ValueError, match="bad input") as caught:
        colour.wrap(Retry(5, on=ConnectionError, backoff=NO_WAIT, clock=clock), script)()
    assert script.calls == 2
    assert not getattr(caught.value, "__notes__", [])


@pytest.mark.parametrize("error", [KeyboardInterrupt, asyncio.CancelledError, SystemExit])
@pytest.mark.parametrize("on", [BaseException, lambda exc: True], ids=["class", "predicate"])
def test_base_exceptions_are_never_retried(
    colour: Colour, clock: FakeClock, error: type[BaseException], on: Any
) -> None:
    """Cancellation and interpreter exits pass straight through, even if ``on`` matches them."""
    script = Script([error(), "ok"])
    with pytest.raises(error) as caught:
        colour.wrap(Retry(3, on=on, backoff=EXACT, clock=clock), script)()
    assert script.calls == 1
    assert clock.sleeps == []
    assert not getattr(caught.value, "__notes__", [])


def test_cancelling_during_the_backoff_stops_retrying() -> None:
    """A coroutine cancelled while it waits out a backoff raises CancelledError, unretried."""

    class BlockingClock(FakeClock):
        async def sleep_async(self, seconds: float) -> None:
            self.sleeps.append(seconds)
            await asyncio.get_running_loop().create_future()  # never done: wait for the cancel

    calls = 0

    async def fetch() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    async def main() -> None:
        clock = BlockingClock()
        task = asyncio.ensure_future(Retry(3, backoff=EXACT, clock=clock)(fetch)())
        for _ in range(100):  # let the task fail once and start its backoff
            if clock.sleeps:
                break
            await asyncio.sleep(0)
        assert clock.sleeps == [1.0]
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=10)

    asyncio.run(main())
    assert calls == 1


def test_on_result_retries_while_true_and_returns_the_last(
    colour: Colour, clock: FakeClock
) -> None:
    """Results matching ``on_result`` are retried; when attempts run out the LAST is returned."""
    script = Script([1, 2, 3, 4])
    retry = Retry(3, on_result=lambda value: value < 10, backoff=NO_WAIT, clock=clock)
    assert colour.wrap(retry, script)() == 3
    assert script.calls == 3


def test_on_result_stops_at_the_first_acceptable_result(colour: Colour, clock: FakeClock) -> None:
    """Retrying on a result stops as soon as ``on_result`` is false, returning that result."""
    script = Script(["pending", "pending", "done", "late"])
    retry = Retry(5, on_result=lambda value: value == "pending", backoff=NO_WAIT, clock=clock)
    assert colour.wrap(retry, script)() == "done"
    assert script.calls == 3


def test_on_result_and_exceptions_share_the_attempts(colour: Colour, clock: FakeClock) -> None:
    """Failures and rejected results both use up attempts from the same count."""
    script = Script([ConnectionError(), "pending", ConnectionError(), "done"])
    retry = Retry(3, on_result=lambda value: value == "pending", backoff=NO_WAIT, clock=clock)
    with pytest.raises(ConnectionError) as caught:
        colour.wrap(retry, script)()
    assert script.calls == 3
    assert "gave up after attempt 3 of 3" in caught.value.__notes__[0]


def test_a_zero_delay_never_sleeps(colour: Colour) -> None:
    """Zero delays skip the sleep call entirely: a clock whose sleep raises is never touched."""
    clock = NoSleepClock()
    script = Script([ConnectionError(), ConnectionError(), "ok"])
    assert colour.wrap(Retry(3, backoff=NO_WAIT, clock=clock), script)() == "ok"
    assert script.calls == 3


def test_delay_hint_replaces_a_shorter_backoff(colour: Colour, clock: FakeClock) -> None:
    """A ``delay_hint`` longer than the backoff is waited instead; a shorter one is ignored."""
    hints = iter([5.0, 0.5])
    retry = Retry(3, backoff=EXACT, delay_hint=lambda outcome: next(hints), clock=clock)
    with pytest.raises(ConnectionError):
        colour.wrap(retry, Script([ConnectionError()]))()
    assert clock.sleeps == [5.0, 2.0]


@pytest.mark.parametrize("scope", [Deadline, Timeout])
def test_retry_gives_up_rather_than_sleep_past_the_deadline(
    colour: Colour, clock: FakeClock, scope: type[Deadline]
) -> None:
    """When the next delay would cross the deadline, the last failure is raised at once."""
    script = Script([ConnectionError("down")])
    policy = Pipeline(scope(4.0, clock=clock), Retry(10, backoff=EXACT, clock=clock))
    with EventRecorder() as recorder, pytest.raises(ConnectionError) as caught:
        colour.wrap(policy, script)()
    # delays 1 and 2 fit in 4 s; the third (4 s) would end at 7 s: give up after attempt 3.
    assert clock.sleeps == [1.0, 2.0]
    assert script.calls == 3
    assert caught.value.__notes__ == [
        "resilience: Retry 'retry' gave up after attempt 3 of 10 "
        "(deadline would pass during the backoff)"
    ]
    assert [e.why for e in recorder.of(RetryGaveUp)] == ["deadline"]


def test_retry_does_not_sleep_at_all_when_the_first_delay_crosses(
    colour: Colour, clock: FakeClock
) -> None:
    """A first delay longer than the time left means no sleep and a single call."""
    script = Script([ConnectionError("down")])
    policy = Pipeline(Deadline(0.5, clock=clock), Retry(10, backoff=EXACT, clock=clock))
    with pytest.raises(ConnectionError, match="down") as caught:
        colour.wrap(policy, script)()
    assert clock.sleeps == []
    assert script.calls == 1
    assert "deadline" in caught.value.__notes__[0]


def test_retry_obeys_the_nearest_of_nested_deadlines(colour: Colour, clock: FakeClock) -> None:
    """An outer 3 s deadline wins over an inner 100 s one: Retry stops before crossing 3 s."""
    script = Script([ConnectionError("down")])
    policy = Pipeline(
        Deadline(3.0, clock=clock),
        Deadline(100.0, clock=clock),
        Retry(10, backoff=EXACT, clock=clock),
    )
    with pytest.raises(ConnectionError):
        colour.wrap(policy, script)()
    assert clock.sleeps == [1.0]  # then 2 s left and a 2 s delay: give up
    assert script.calls == 2


def test_retry_returns_the_last_result_at_the_deadline(colour: Colour, clock: FakeClock) -> None:
    """With ``on_result``, hitting the deadline returns the last result instead of sleeping."""
    script = Script(["pending-1", "pending-2", "pending-3"])
    policy = Pipeline(
        Timeout(2.5, clock=clock),
        Retry(10, on_result=lambda v: v.startswith("pending"), backoff=EXACT, clock=clock),
    )
    assert colour.wrap(policy, script)() == "pending-2"
    assert clock.sleeps == [1.0]
    assert script.calls == 2


def test_giving_up_at_the_deadline_spends_no_budget(colour: Colour, clock: FakeClock) -> None:
    """A retry refused by the deadline does not take a retry from the shared budget."""
    budget = RetryBudget(ratio=0.0, min_retries_per_second=0.5, window=10.0, clock=clock)
    policy = Pipeline(
        Deadline(0.5, clock=clock), Retry(3, backoff=EXACT, budget=budget, clock=clock)
    )
    with pytest.raises(ConnectionError):
        colour.wrap(policy, Script([ConnectionError()]))()
    assert budget.available() == 5


def test_events_report_each_retry_and_the_give_up(colour: Colour, clock: FakeClock) -> None:
    """RetryScheduled carries attempt, delay and reason; RetryGaveUp says why it stopped."""
    retry = Retry(3, backoff=EXACT, clock=clock, name="payments")
    with EventRecorder() as recorder, pytest.raises(ConnectionError):
        colour.wrap(retry, Script([ConnectionError()]))()
    scheduled = recorder.of(RetryScheduled)
    assert [(e.policy, e.attempt, e.delay, e.reason) for e in scheduled] == [
        ("payments", 1, 1.0, "ConnectionError"),
        ("payments", 2, 2.0, "ConnectionError"),
    ]
    gave_up = recorder.of(RetryGaveUp)
    assert [(e.policy, e.attempts, e.why, e.reason) for e in gave_up] == [
        ("payments", 3, "attempts", "ConnectionError")
    ]


def test_events_describe_retried_results(colour: Colour, clock: FakeClock) -> None:
    """A retried result is reported as ``result <repr>``; a success emits no give-up."""
    retry = Retry(3, on_result=lambda v: v == "pending", backoff=EXACT, clock=clock)
    with EventRecorder() as recorder:
        assert colour.wrap(retry, Script(["pending", "done"]))() == "done"
    assert [(e.attempt, e.reason) for e in recorder.of(RetryScheduled)] == [(1, "result 'pending'")]
    assert recorder.of(RetryGaveUp) == []


def test_call_applies_the_policy_to_sync_functions(clock: FakeClock) -> None:
    """``policy.call(fn, *args, **kwargs)`` retries a plain function with its arguments."""
    received: list[tuple[object, ...]] = []

    def charge(order: int, *, key: str) -> str:
        received.append((order, key))
        if len(received) == 1:
            raise ConnectionError
        return f"{order}:{key}"

    assert Retry(2, backoff=NO_WAIT, clock=clock).call(charge, 7, key="v") == "7:v"
    assert received == [(7, "v"), (7, "v")]


def test_call_applies_the_policy_to_coroutine_functions(clock: FakeClock) -> None:
    """``policy.call`` of a coroutine function returns an awaitable that retries it."""
    calls = 0

    async def fetch(value: int) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError
        return value * 2

    assert asyncio.run(Retry(2, backoff=NO_WAIT, clock=clock).call(fetch, 21)) == 42
    assert calls == 2


def test_decoration_keeps_the_function_identity() -> None:
    """Decorated functions keep their name, docstring, ``__wrapped__`` and colour."""

    def charge(order_id: str) -> str:
        """Charge an order."""
        return order_id

    async def refund(order_id: str) -> str:
        return order_id

    wrapped = Retry()(charge)
    assert wrapped.__name__ == "charge"
    assert wrapped.__doc__ == "Charge an order."
    assert wrapped.__wrapped__ is charge  # type: ignore[attr-defined]
    wrapped_async = Retry()(refund)
    assert wrapped_async.__name__ == "refund"
    assert wrapped_async.__wrapped__ is refund  # type: ignore[attr-defined]
    assert asyncio.iscoroutinefunction(wrapped_async)


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"attempts": 0}, ValueError, "attempts"),
        ({"attempts": -1}, ValueError, "attempts"),
        ({"attempts": 1.5}, TypeError, "attempts"),
        ({"attempts": True}, TypeError, "attempts"),
        ({"attempts": "3"}, TypeError, "attempts"),
        ({"on": "x"}, TypeError, "on"),
        ({"on": ()}, TypeError, "on"),
        ({"on": (ValueError, "x")}, TypeError, "on"),
        ({"on_result": 3}, TypeError, "on_result"),
        ({"backoff": 0.5}, TypeError, "backoff"),
        ({"budget": 0.2}, TypeError, "budget"),
        ({"delay_hint": 1.0}, TypeError, "delay_hint"),
        ({"rejections": "retry"}, ValueError, "rejections"),
        ({"rejections": None}, ValueError, "rejections"),
    ],
)
def test_bad_configuration_names_the_parameter(
    kwargs: dict[str, object], error: type[Exception], name: str
) -> None:
    """Invalid settings fail at construction, naming the parameter."""
    with pytest.raises(error, match=rf"\b{name}\b"):
        Retry(**kwargs)  # type: ignore[arg-type]


def test_a_class_that_is_not_an_exception_is_refused_as_on() -> None:
    """``on=str`` is neither an exception class nor a predicate: a TypeError naming ``on``."""
    with pytest.raises(TypeError, match="on must be"):
        Retry(on=str)  # type: ignore[arg-type]


# -- rejections: a policy inside refused the call, nothing was sent ----------------------------


@pytest.mark.parametrize("rejection", REJECTIONS.values(), ids=list(REJECTIONS))
@pytest.mark.parametrize(
    "on", [Exception, RejectedError, lambda exc: True], ids=["Exception", "Rejected", "all"]
)
def test_a_rejection_is_final_by_default_whatever_on_says(
    colour: Colour, rejection: Callable[[], RejectedError], on: Any
) -> None:
    """A plain Retry() does not retry a local refusal: one call, no sleep, no budget spent, a
    note naming who refused, and RetryGaveUp(why="rejected")."""
    clock = NoSleepClock()
    budget = RetryBudget(ratio=0.0, min_retries_per_second=0.5, window=10.0, clock=clock)
    calls = 0

    def refused() -> None:
        nonlocal calls
        calls += 1
        raise rejection()

    retry = Retry(on=on, budget=budget, clock=clock, name="orders")
    with EventRecorder() as recorder, pytest.raises(RejectedError) as caught:
        colour.wrap(retry, refused)()
    error = caught.value
    assert calls == 1 and budget.available() == 5
    assert caught.value.__notes__ == [
        f"resilience: not retried: refused locally by {error.kind} 'inner' "
        "(Retry 'orders', rejections='final')"
    ]
    assert [(e.attempts, e.why) for e in recorder.of(RetryGaveUp)] == [(1, "rejected")]


def test_an_open_breaker_inside_ends_the_retries_at_once(colour: Colour, clock: FakeClock) -> None:
    """The audited case: Retry() outside an open breaker made 3 rejected attempts and slept
    0.2 s; now one rejected attempt, no sleep."""
    breaker = CircuitBreaker("ledger", clock=clock)
    breaker.open()
    guarded = colour.wrap(Pipeline(Retry(clock=clock), breaker), lambda: "posted")
    with pytest.raises(CircuitOpenError) as caught:
        guarded()
    assert clock.sleeps == [] and breaker.metrics.total_rejections == 1
    assert "refused locally by circuit breaker 'ledger'" in caught.value.__notes__[-1]


def test_a_failure_then_a_rejection_stops_at_the_rejection(
    colour: Colour, clock: FakeClock
) -> None:
    """A retried failure followed by a rejection: the rejection ends the retries."""
    outcomes: list[Exception] = [ConnectionError("down"), ThrottledError("db", 0.9)]

    def call() -> str:
        raise outcomes.pop(0)

    with pytest.raises(ThrottledError):
        colour.wrap(Retry(5, backoff=EXACT, clock=clock), call)()
    assert clock.sleeps == [1.0] and outcomes == []


def test_wait_retries_a_rejection_after_its_retry_after(colour: Colour, clock: FakeClock) -> None:
    """``rejections="wait"``: an open breaker is retried after its retry_after when that is
    longer than the backoff, after the backoff when it is shorter."""
    breaker = CircuitBreaker("ledger", open_for=5.0, clock=clock)
    breaker.open()
    calls = 0

    def post() -> str:
        nonlocal calls
        calls += 1
        return "posted"

    retry = Retry(3, backoff=EXACT, clock=clock, rejections="wait")
    assert retry.rejections == "wait"
    assert colour.wrap(Pipeline(retry, breaker), post)() == "posted"
    assert clock.sleeps == [5.0] and calls == 1  # 5 s open beats the 1 s backoff
    breaker.open()
    clock.advance(4.5)  # half a second left: the backoff (1 s) is longer
    assert colour.wrap(Pipeline(retry, breaker), post)() == "posted"
    assert clock.sleeps == [5.0, 1.0]


@pytest.mark.parametrize("rejection", REJECTIONS.values(), ids=list(REJECTIONS))
def test_wait_waits_the_longest_of_backoff_retry_after_and_hint(
    colour: Colour, clock: FakeClock, rejection: Callable[[], RejectedError]
) -> None:
    """Each of the five rejections, with "wait": delay = max(backoff, retry_after, hint)."""
    hint = 0.7

    def refused() -> None:
        raise rejection()

    retry = Retry(
        2,
        backoff=Backoff(initial=0.4, jitter="none"),
        delay_hint=lambda outcome: hint,
        clock=clock,
        rejections="wait",
    )
    with pytest.raises(RejectedError) as caught:
        colour.wrap(retry, refused)()
    retry_after = getattr(caught.value, "retry_after", None)
    assert clock.sleeps == [max(0.4, retry_after or 0.0, hint)]
    assert "gave up after attempt 2 of 2" in caught.value.__notes__[-1]


def test_wait_gives_up_rather_than_sleep_past_the_deadline(
    colour: Colour, clock: FakeClock
) -> None:
    """A rejection whose retry_after would pass the deadline is raised at once, noted so."""
    breaker = CircuitBreaker("ledger", open_for=5.0, clock=clock)
    breaker.open()
    policy = Pipeline(Deadline(2.0, clock=clock), Retry(clock=clock, rejections="wait"), breaker)
    with pytest.raises(CircuitOpenError) as caught:
        colour.wrap(policy, lambda: "posted")()
    assert clock.sleeps == []
    assert "deadline would pass during the backoff" in caught.value.__notes__[-1]


def test_wait_still_asks_on(colour: Colour, clock: FakeClock) -> None:
    """With "wait", a rejection that ``on`` does not match is not retried (and not noted)."""
    calls = 0

    def refused() -> None:
        nonlocal calls
        calls += 1
        raise ThrottledError("db", 0.5)

    retry = Retry(on=ConnectionError, clock=clock, rejections="wait")
    with pytest.raises(ThrottledError) as caught:
        colour.wrap(retry, refused)()
    assert calls == 1 and clock.sleeps == [] and not getattr(caught.value, "__notes__", [])


def test_a_deadline_exceeded_inside_is_still_retried(colour: Colour, clock: FakeClock) -> None:
    """DeadlineExceededError from an inner Timeout is no rejection: retried as before."""
    calls = 0

    def slow() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise DeadlineExceededError("Timeout", 1.0)
        return "ok"

    assert colour.wrap(Retry(backoff=EXACT, clock=clock), slow)() == "ok"
    assert calls == 2 and clock.sleeps == [1.0]


def test_replace_keeps_rejections() -> None:
    """``replace()`` keeps the setting unless it is changed."""
    retry = Retry(rejections="wait")
    assert retry.replace(attempts=5).rejections == "wait"
    assert retry.replace(rejections="final").rejections == "final"
    assert Retry().rejections == "final"
