"""The retry core alone: decisions from the outcome and the time passed in, frozen config,
stable reasons for giving up."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from resilience import (
    Backoff,
    BulkheadFullError,
    CircuitOpenError,
    Deadline,
    DeadlineExceededError,
    RateLimitedError,
    RetryBudgetExhausted,
    RetryGaveUp,
    RetryScheduled,
)
from resilience._retry.core import Attempts, Rejections, RetryCore
from resilience.instrumentation import log_event
from resilience.testing import EventRecorder, FakeClock

EXACT = Backoff(1.0, 60.0, 2.0, "none")


def core(attempts: int = 3, *, budgeted: bool = False) -> RetryCore:
    return RetryCore(
        name="pay",
        attempts=attempts,
        retries_on=lambda exc: isinstance(exc, ConnectionError),
        on_result=lambda result: result == "busy",
        backoff=EXACT,
        budgeted=budgeted,
    )


def test_the_time_left_is_what_decides_not_the_deadline_in_force() -> None:
    """The core uses the time left it is given: inside a deadline with an hour to go, a
    time left of 1.5 s stops before a 2 s delay (the core reads no deadline and no clock)."""
    clock = FakeClock()
    attempts = Attempts(core(5))
    with EventRecorder() as recorder:
        Deadline(3600.0, clock=clock).call(
            lambda: [
                attempts.after_exception(ConnectionError(), 10.0),
                attempts.after_exception(ConnectionError(), 1.5),
            ]
        )
    assert [e.why for e in recorder.of(RetryGaveUp)] == ["deadline"]
    assert [e.delay for e in recorder.of(RetryScheduled)] == [1.0]
    assert clock.now() == 0.0


def test_no_deadline_means_no_limit_from_time() -> None:
    """``time_left=None`` (no deadline) retries until the attempts run out."""
    attempts = Attempts(core(3))
    assert attempts.after_result("busy", None) == 1.0
    assert attempts.after_result("busy", None) == 2.0
    assert attempts.after_result("busy", None) is None


def test_the_config_is_frozen() -> None:
    """A RetryCore cannot be changed after construction (every decision reads the same one)."""
    config = core()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.attempts = 10  # type: ignore[misc]


def test_why_takes_one_of_three_stable_values_with_english_notes() -> None:
    """Attempts, budget and deadline each end retrying with a stable ``why``; the failure's
    note and the event's ``explanation`` keep the English."""
    errors = [ConnectionError("a"), ConnectionError("b"), ConnectionError("c")]
    with EventRecorder() as recorder:
        assert Attempts(core(1)).after_exception(errors[0], None) is None
        assert Attempts(core(3)).after_exception(errors[1], 0.5) is None
        budgeted = Attempts(core(3, budgeted=True))
        assert budgeted.after_exception(errors[2], None) == 1.0  # asks the budget
        assert budgeted.budget_answered(False) is None
    gave_up = recorder.of(RetryGaveUp)
    assert [e.why for e in gave_up] == ["attempts", "deadline", "budget"]
    assert [e.explanation for e in gave_up] == [
        "attempts exhausted",
        "deadline would pass during the backoff",
        "retry budget spent",
    ]
    assert [error.__notes__ for error in errors] == [
        ["resilience: Retry 'pay' gave up after attempt 1 of 1 (attempts exhausted)"],
        [
            "resilience: Retry 'pay' gave up after attempt 1 of 3 "
            "(deadline would pass during the backoff)"
        ],
        ["resilience: Retry 'pay' gave up after attempt 1 of 3 (retry budget spent)"],
    ]
    assert len(recorder.of(RetryBudgetExhausted)) == 1


def test_a_granted_retry_is_scheduled_only_when_the_budget_answers() -> None:
    """With a budget, the requested delay becomes a retry once granted: the attempt count and
    the RetryScheduled event follow the answer, not the request."""
    attempts = Attempts(core(3, budgeted=True))
    with EventRecorder() as recorder:
        assert attempts.after_exception(ConnectionError(), None) == 1.0
        assert (attempts.number, recorder.of(RetryScheduled)) == (1, [])
        assert attempts.budget_answered(True) == 1.0
    assert attempts.number == 2
    assert [e.attempt for e in recorder.of(RetryScheduled)] == [1]


def test_the_log_line_says_why_in_english(caplog: pytest.LogCaptureFixture) -> None:
    """The log record of RetryGaveUp carries the stable value and its English."""
    with caplog.at_level(logging.INFO, logger="resilience"):
        log_event(RetryGaveUp("pay", 3, "attempts", "ConnectionError"))
    assert "why='attempts'" in caplog.text
    assert "(attempts exhausted)" in caplog.text


def rejecting_core(rejections: Rejections) -> RetryCore:
    """A budgeted core whose ``on`` matches everything, with ``rejections`` as given."""
    everything = dataclasses.replace(core(3, budgeted=True), retries_on=lambda exc: True)
    return dataclasses.replace(everything, rejections=rejections)


def test_the_core_ends_the_retries_at_a_rejection_without_asking_the_budget() -> None:
    """ "final": ``after_exception`` returns None for a RejectedError (even with ``on``
    matching everything and time to spare), requests no budget and notes who refused."""
    attempts = Attempts(rejecting_core("final"))
    error = CircuitOpenError("ledger", 4.0)
    with EventRecorder() as recorder:
        assert attempts.after_exception(error, None) is None
    assert attempts._pending is None and attempts.number == 1
    assert error.__notes__ == [
        "resilience: not retried: refused locally by circuit breaker 'ledger' "
        "(Retry 'pay', rejections='final')"
    ]
    assert [(e.why, e.reason) for e in recorder.of(RetryGaveUp)] == [
        ("rejected", "CircuitOpenError")
    ]
    assert attempts.after_exception(DeadlineExceededError("Timeout", 1.0), None) == 1.0


def test_the_core_waits_out_a_rejection_in_wait_mode() -> None:
    """ "wait": the delay is the longer of the backoff and retry_after, the request goes to
    the budget, and a retry_after past the time left gives up ("deadline")."""
    attempts = Attempts(rejecting_core("wait"))
    assert attempts.after_exception(CircuitOpenError("ledger", 4.0), None) == 4.0
    assert attempts.budget_answered(True) == 4.0
    assert attempts.after_exception(BulkheadFullError("pool", 2), None) == 2.0  # backoff
    assert attempts.budget_answered(True) == 2.0
    late = Attempts(rejecting_core("wait"))
    with EventRecorder() as recorder:
        assert late.after_exception(RateLimitedError("api", 9.0), 5.0) is None
    assert [e.why for e in recorder.of(RetryGaveUp)] == ["deadline"]
    odd = Attempts(rejecting_core("wait"))
    assert odd.after_exception(RateLimitedError("api", float("nan")), None) == 1.0
