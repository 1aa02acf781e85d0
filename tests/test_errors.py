"""The exception tree: hierarchy, data and pickling."""

from __future__ import annotations

import pickle

import pytest

from resilience import (
    BulkheadFullError,
    CircuitOpenError,
    DeadlineExceededError,
    RateLimitedError,
    ResilienceError,
)

ERRORS = [
    CircuitOpenError("payments", 12.5),
    BulkheadFullError("db", 8),
    RateLimitedError("api", 0.25),
    DeadlineExceededError("Deadline", 5.0),
]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_every_error_is_a_resilience_error_and_pickles(error: ResilienceError) -> None:
    """All rejections share one base class and survive pickling with their data."""
    assert isinstance(error, ResilienceError)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert vars(copy) == vars(error)
    assert str(copy) == str(error)


def test_rejections_carry_their_data() -> None:
    """Names, retry_after, max_concurrent and timeout are attributes, not just text."""
    assert (ERRORS[0].name, ERRORS[0].retry_after) == ("payments", 12.5)
    assert (ERRORS[1].name, ERRORS[1].max_concurrent) == ("db", 8)
    assert ERRORS[2].retry_after == 0.25
    assert ERRORS[3].timeout == 5.0


def test_deadline_exceeded_is_a_timeout_error() -> None:
    """Code catching TimeoutError also catches our deadlines."""
    assert isinstance(DeadlineExceededError("Timeout", 1.0), TimeoutError)
