"""The exception tree: hierarchy, data and pickling."""

from __future__ import annotations

import asyncio
import copy
import pickle

import pytest

from resilience import (
    BulkheadFullError,
    CircuitOpenError,
    ConcurrencyLimitedError,
    DeadlineExceededError,
    RateLimitedError,
    RejectedError,
    ResilienceError,
    ThrottledError,
)


def make_errors() -> list[ResilienceError]:
    return [
        CircuitOpenError("payments", 12.5),
        BulkheadFullError("db", 8),
        RateLimitedError("api", 0.25),
        DeadlineExceededError("Deadline", 5.0),
    ]


ERRORS = make_errors()
IDS = [type(error).__name__ for error in ERRORS]


@pytest.mark.parametrize("error", ERRORS, ids=IDS)
def test_every_error_is_a_resilience_error(error: ResilienceError) -> None:
    """All rejections share one base class, itself an Exception (never a BaseException only)."""
    assert isinstance(error, ResilienceError)
    assert issubclass(ResilienceError, Exception)
    with pytest.raises(ResilienceError):
        raise error


@pytest.mark.parametrize("error", ERRORS, ids=IDS)
def test_errors_pickle_with_their_data(error: ResilienceError) -> None:
    """A pickled and unpickled error has the same type, attributes and message."""
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is type(error)
    assert vars(clone) == vars(error)
    assert str(clone) == str(error)
    assert clone.args == error.args
    assert vars(copy.copy(error)) == vars(error)


@pytest.mark.parametrize("index", range(len(ERRORS)), ids=IDS)
def test_errors_pickle_with_their_notes(index: int) -> None:
    """PEP 678 notes (such as Retry's reason for giving up) survive pickling."""
    error = make_errors()[index]
    error.__notes__ = ["gave up: deadline would pass during the backoff"]  # add_note(), 3.10 too
    clone = pickle.loads(pickle.dumps(error))
    assert clone.__notes__ == ["gave up: deadline would pass during the backoff"]


def test_rejections_carry_their_data() -> None:
    """Names, retry_after, max_concurrent and timeout are attributes, not just text."""
    circuit, bulkhead, rate, deadline = make_errors()
    assert isinstance(circuit, CircuitOpenError)
    assert (circuit.name, circuit.retry_after) == ("payments", 12.5)
    assert isinstance(bulkhead, BulkheadFullError)
    assert (bulkhead.name, bulkhead.max_concurrent) == ("db", 8)
    assert isinstance(rate, RateLimitedError)
    assert (rate.name, rate.retry_after) == ("api", 0.25)
    assert isinstance(deadline, DeadlineExceededError)
    assert (deadline.name, deadline.timeout) == ("Deadline", 5.0)


def test_messages_name_the_policy() -> None:
    """Each message names the policy instance and its figure."""
    assert [str(error) for error in make_errors()] == [
        "circuit breaker 'payments' is open; retry after 12.500s",
        "bulkhead 'db' is full (8 concurrent calls)",
        "rate limiter 'api' refused the call; retry after 0.250s",
        "Deadline of 5.000s exceeded",
    ]


def test_deadline_exceeded_is_a_timeout_error() -> None:
    """Code catching TimeoutError (or asyncio.TimeoutError) also catches our deadlines; the
    other rejections are not timeouts."""
    error = DeadlineExceededError("Timeout", 1.0)
    assert isinstance(error, TimeoutError)
    assert isinstance(error, asyncio.TimeoutError)
    with pytest.raises(TimeoutError):
        raise error
    assert error.errno is None  # an OSError by inheritance, without OSError's arguments
    for other in make_errors()[:3]:
        assert not isinstance(other, TimeoutError)


def rejections() -> list[RejectedError]:
    return [
        CircuitOpenError("payments", 12.5),
        BulkheadFullError("db", 8),
        RateLimitedError("api", 0.25),
        ConcurrencyLimitedError("search", 4, 4, 0.05),
        ThrottledError("backend", 0.5),
    ]


@pytest.mark.parametrize("error", rejections(), ids=lambda error: type(error).__name__)
def test_the_five_local_refusals_are_rejected_errors(error: RejectedError) -> None:
    """Every refusal made without running the call is a RejectedError with a name and a kind
    that the message starts with; a deadline that ran out is not one."""
    assert isinstance(error, RejectedError) and isinstance(error, ResilienceError)
    assert error.name in str(error)
    assert str(error).startswith(error.kind)
    assert type(pickle.loads(pickle.dumps(error))) is type(error)


def test_a_deadline_exceeded_is_not_a_rejection() -> None:
    """DeadlineExceededError is a ResilienceError but no RejectedError: the call ran."""
    assert not issubclass(DeadlineExceededError, RejectedError)
    assert issubclass(DeadlineExceededError, ResilienceError)
