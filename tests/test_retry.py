"""Retry: attempt counts, what is retried, the original exception, deadlines, events."""

from __future__ import annotations

import asyncio
import random

import pytest

from resilience import (
    Backoff,
    Deadline,
    Pipeline,
    Retry,
    RetryGaveUp,
    RetryScheduled,
    Timeout,
)
from resilience.testing import EventRecorder, FakeClock
from tests.conftest import Colour, Script

NO_WAIT = Backoff(initial=0.0, maximum=0.0)
EXACT = Backoff(initial=1.0, maximum=100.0, multiplier=2.0, jitter="none")


class NoSleepClock(FakeClock):
    """A fake clock that fails the test if anything sleeps on it."""

    def sleep(self, seconds: float) -> None:
        raise AssertionError(f"slept {seconds}")

    async def sleep_async(self, seconds: float) -> None:
        raise AssertionError(f"slept {seconds}")


@pytest.mark.parametrize("attempts", [1, 2, 5])
def test_attempts_count_the_first_call(colour: Colour, clock: FakeClock, attempts: int) -> None:
    """``attempts`` is the total number of calls, the first one included."""
    script = Script([ConnectionError("down")])
    with pytest.raises(ConnectionError):
        colour.wrap(Retry(attempts, backoff=NO_WAIT, clock=clock), script)()
    assert script.calls == attempts


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


@pytest.mark.parametrize(
    "on",
    [ConnectionError, (ConnectionError, TimeoutError), lambda exc: "retry me" in str(exc)],
    ids=["class", "tuple", "predicate"],
)
def test_on_selects_what_is_retried(colour: Colour, clock: FakeClock, on: object) -> None:
    """``on`` as a class, a tuple or a predicate: matching failures are retried."""
    script = Script([ConnectionError("retry me"), "ok"])
    assert colour.wrap(Retry(3, on=on, backoff=NO_WAIT, clock=clock), script)() == "ok"  # type: ignore[arg-type]
    assert script.calls == 2


def test_non_matching_exceptions_propagate_after_one_call(colour: Colour, clock: FakeClock) -> None:
    """An exception that ``on`` does not match is raised at once, without a note."""
    script = Script([ValueError("bad input"), "ok"])
    with pytest.raises(ValueError, match="bad input") as caught:
        colour.wrap(Retry(3, on=ConnectionError, clock=clock), script)()
    assert script.calls == 1
    assert not getattr(caught.value, "__notes__", [])


@pytest.mark.parametrize("error", [KeyboardInterrupt, asyncio.CancelledError, SystemExit])
def test_base_exceptions_are_never_retried(colour: Colour, clock: FakeClock, error: type) -> None:
    """Cancellation and interpreter exits are not failures: they pass straight through."""
    script = Script([error()])
    with pytest.raises(error):
        colour.wrap(Retry(3, on=BaseException, clock=clock), script)()
    assert script.calls == 1


def test_on_result_retries_while_true_and_returns_the_last(
    colour: Colour, clock: FakeClock
) -> None:
    """Results matching ``on_result`` are retried; when attempts run out the last is returned."""
    script = Script(["pending", "pending", "pending", "done"])
    retry = Retry(3, on_result=lambda value: value == "pending", backoff=NO_WAIT, clock=clock)
    assert colour.wrap(retry, script)() == "pending"
    assert script.calls == 3
    script = Script(["pending", "done"])
    assert colour.wrap(retry, script)() == "done"


def test_delays_follow_the_backoff_on_the_clock(colour: Colour, clock: FakeClock) -> None:
    """The clock is asked to sleep exactly the backoff's delays (seeded full jitter)."""
    expected = list(Backoff(rng=random.Random(7)).delays(3))
    retry = Retry(4, backoff=Backoff(rng=random.Random(7)), clock=clock)
    with pytest.raises(ConnectionError):
        colour.wrap(retry, Script([ConnectionError()]))()
    assert clock.sleeps == expected
    assert all(0.0 <= delay <= 0.1 * 2**n for n, delay in enumerate(expected))


def test_a_zero_delay_never_sleeps(colour: Colour) -> None:
    """Zero delays skip the sleep call entirely (``sleep(0)`` costs ~56 µs)."""
    clock = NoSleepClock()
    script = Script([ConnectionError(), ConnectionError(), "ok"])
    assert colour.wrap(Retry(3, backoff=NO_WAIT, clock=clock), script)() == "ok"


def test_delay_hint_replaces_a_shorter_backoff(colour: Colour, clock: FakeClock) -> None:
    """A ``delay_hint`` longer than the backoff is waited instead; a shorter one is ignored."""
    hints = iter([5.0, 0.5])
    retry = Retry(3, backoff=EXACT, delay_hint=lambda outcome: next(hints), clock=clock)
    with pytest.raises(ConnectionError):
        colour.wrap(retry, Script([ConnectionError()]))()
    assert clock.sleeps == [5.0, 2.0]


def test_retry_gives_up_rather_than_sleep_past_the_deadline(
    colour: Colour, clock: FakeClock
) -> None:
    """When the next delay would cross the deadline, the last failure is raised at once."""
    script = Script([ConnectionError("down")])
    policy = Pipeline(Deadline(4.0, clock=clock), Retry(10, backoff=EXACT, clock=clock))
    with pytest.raises(ConnectionError) as caught:
        colour.wrap(policy, script)()
    # delays 1 and 2 fit in 4 s; the third (4 s) would end at 7 s: give up after attempt 3.
    assert clock.sleeps == [1.0, 2.0]
    assert script.calls == 3
    assert "attempt 3 of 10 (deadline would pass during the backoff)" in caught.value.__notes__[0]


def test_retry_returns_the_last_result_at_the_deadline(colour: Colour, clock: FakeClock) -> None:
    """With ``on_result``, hitting the deadline returns the last result instead of sleeping."""
    script = Script(["pending"])
    policy = Pipeline(
        Timeout(2.5, clock=clock),
        Retry(10, on_result=lambda v: v == "pending", backoff=EXACT, clock=clock),
    )
    assert colour.wrap(policy, script)() == "pending"
    assert clock.sleeps == [1.0]


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
    assert [(e.attempts, e.why) for e in recorder.of(RetryGaveUp)] == [(3, "attempts exhausted")]


def test_call_applies_the_policy_at_call_time(clock: FakeClock) -> None:
    """``policy.call(fn, *args, **kwargs)`` runs sync and coroutine functions under the policy."""
    script = Script([ConnectionError(), "ok"])
    retry = Retry(2, backoff=NO_WAIT, clock=clock)
    assert retry.call(script, 1, key="v") == "ok"

    async def fetch(value: int) -> int:
        return value * 2

    assert asyncio.run(retry.call(fetch, 21)) == 42


def test_decoration_keeps_the_function_identity() -> None:
    """Decorated functions keep their name, docstring and ``__wrapped__``."""

    def charge(order_id: str) -> str:
        """Charge an order."""
        return order_id

    async def refund(order_id: str) -> str:
        return order_id

    wrapped = Retry()(charge)
    assert wrapped.__name__ == "charge"
    assert wrapped.__doc__ == "Charge an order."
    assert wrapped.__wrapped__ is charge  # type: ignore[attr-defined]
    assert asyncio.iscoroutinefunction(Retry()(refund))


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"attempts": 0}, ValueError, "attempts"),
        ({"attempts": -1}, ValueError, "attempts"),
        ({"attempts": 1.5}, TypeError, "attempts"),
        ({"attempts": True}, TypeError, "attempts"),
        ({"on": "x"}, TypeError, "on"),
        ({"on": ()}, TypeError, "on"),
        ({"on_result": 3}, TypeError, "on_result"),
        ({"backoff": 0.5}, TypeError, "backoff"),
        ({"budget": 0.2}, TypeError, "budget"),
    ],
)
def test_bad_configuration_names_the_parameter(
    kwargs: dict[str, object], error: type[Exception], name: str
) -> None:
    """Invalid settings fail at construction, naming the parameter."""
    with pytest.raises(error, match=name):
        Retry(**kwargs)  # type: ignore[arg-type]
