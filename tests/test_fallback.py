"""Fallback: a value or a handler's result instead of a matching failure."""

from __future__ import annotations

import asyncio

import pytest

from resilience import (
    CircuitBreaker,
    CircuitOpenError,
    Fallback,
    FallbackUsed,
    Pipeline,
)
from resilience.testing import EventRecorder, FakeClock
from tests.conftest import Colour, Script


def test_value_replaces_a_matching_failure(colour: Colour) -> None:
    """A matching exception becomes the fallback value, and an event says so."""
    with EventRecorder() as recorder:
        result = colour.wrap(Fallback("cached"), Script([ConnectionError()]))()
    assert result == "cached"
    assert [event.reason for event in recorder.of(FallbackUsed)] == ["ConnectionError"]


def test_handler_receives_the_exception(colour: Colour) -> None:
    """The handler is called with the exception and its result returned."""
    fallback = Fallback(handler=lambda exc: f"degraded: {exc}")
    assert colour.wrap(fallback, Script([ConnectionError("down")]))() == "degraded: down"


def test_async_handler_is_awaited() -> None:
    """For coroutine functions the handler may be a coroutine function too."""

    async def handler(exc: Exception) -> str:
        await asyncio.sleep(0)
        return f"async {type(exc).__name__}"

    @Fallback(handler=handler)
    async def broken() -> str:
        raise TimeoutError

    assert asyncio.run(broken()) == "async TimeoutError"


def test_non_matching_failures_propagate(colour: Colour) -> None:
    """Exceptions outside ``on`` are not replaced."""
    with pytest.raises(ValueError, match="bad"):
        colour.wrap(Fallback("x", on=ConnectionError), Script([ValueError("bad")]))()


def test_successes_pass_through(colour: Colour) -> None:
    """A successful call returns its own value."""
    assert colour.wrap(Fallback("x"), Script(["real"]))() == "real"


@pytest.mark.parametrize("error", [KeyboardInterrupt, asyncio.CancelledError])
def test_base_exceptions_are_never_replaced(error: type[BaseException]) -> None:
    """Cancellation and interrupts are not failures to paper over."""
    with pytest.raises(error):
        Fallback("x", on=BaseException)(Script([error()]))()


def test_outermost_fallback_catches_an_open_breaker() -> None:
    """Placed outermost, a fallback answers for an open circuit breaker."""
    clock = FakeClock()
    breaker = CircuitBreaker(minimum_calls=1, clock=clock)
    guarded = Pipeline(Fallback(handler=lambda exc: type(exc).__name__), breaker)(
        Script([ConnectionError()])
    )
    assert guarded() == "ConnectionError"
    assert guarded() == CircuitOpenError.__name__


@pytest.mark.parametrize("kwargs", [{}, {"value": 1, "handler": lambda exc: 2}])
def test_exactly_one_of_value_and_handler(kwargs: dict[str, object]) -> None:
    """Neither or both of value and handler is a configuration error."""
    with pytest.raises(ValueError, match="value and handler"):
        Fallback(**kwargs)
