"""Fallback: a value or a handler's result instead of a matching failure."""

from __future__ import annotations

import asyncio

import pytest

from resilience import (
    Bulkhead,
    BulkheadFullError,
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
        result = colour.wrap(Fallback("cached", name="prices"), Script([ConnectionError()]))()
    assert result == "cached"
    assert [(event.policy, event.reason) for event in recorder.of(FallbackUsed)] == [
        ("prices", "ConnectionError")
    ]


def test_none_is_a_valid_fallback_value(colour: Colour) -> None:
    """``Fallback(None)`` gives the value None; it is not the missing value."""
    assert colour.wrap(Fallback(None), Script([ConnectionError()]))() is None


def test_handler_receives_the_exception(colour: Colour) -> None:
    """The handler is called with the very exception raised, and its result returned."""
    received: list[Exception] = []

    def handler(exc: Exception) -> str:
        received.append(exc)
        return f"degraded: {exc}"

    def behaviour() -> str:
        raise ConnectionError("down")

    with EventRecorder() as recorder:
        assert colour.wrap(Fallback(handler=handler), behaviour)() == "degraded: down"
    assert [type(exc) for exc in received] == [ConnectionError]
    assert len(recorder.of(FallbackUsed)) == 1


def test_async_handler_is_awaited() -> None:
    """For coroutine functions the handler may be a coroutine function too."""

    async def handler(exc: Exception) -> str:
        await asyncio.sleep(0)
        return f"async {type(exc).__name__}"

    @Fallback(handler=handler)
    async def broken() -> str:
        raise TimeoutError

    assert asyncio.run(broken()) == "async TimeoutError"


def test_an_async_handler_cannot_guard_a_plain_function() -> None:
    """A coroutine-function handler on a plain function fails at decoration, naming handler,
    instead of returning an un-awaited coroutine."""

    async def handler(exc: Exception) -> str:
        return "never"

    with pytest.raises(TypeError, match="handler"):
        Fallback(handler=handler)(Script([ConnectionError()]))


def test_non_matching_failures_propagate(colour: Colour) -> None:
    """Exceptions outside ``on`` are not replaced, and no event is emitted."""
    with EventRecorder() as recorder, pytest.raises(ValueError, match="bad"):
        colour.wrap(Fallback("x", on=ConnectionError), Script([ValueError("bad")]))()
    assert recorder.of(FallbackUsed) == []


def test_on_accepts_a_tuple_and_a_predicate(colour: Colour) -> None:
    """``on`` may be a tuple of classes or a predicate on the exception."""
    by_tuple = Fallback("x", on=(KeyError, ConnectionError))
    assert colour.wrap(by_tuple, Script([ConnectionError()]))() == "x"
    by_predicate = Fallback("x", on=lambda exc: "retryable" in str(exc))
    assert colour.wrap(by_predicate, Script([OSError("retryable")]))() == "x"
    with pytest.raises(OSError, match="fatal"):
        colour.wrap(by_predicate, Script([OSError("fatal")]))()


def test_successes_pass_through(colour: Colour) -> None:
    """A successful call returns its own value, with no event."""
    with EventRecorder() as recorder:
        assert colour.wrap(Fallback("x"), Script(["real"]))() == "real"
    assert recorder.of(FallbackUsed) == []


@pytest.mark.parametrize("error", [KeyboardInterrupt, SystemExit, asyncio.CancelledError])
def test_base_exceptions_are_never_replaced(colour: Colour, error: type[BaseException]) -> None:
    """Cancellation and interrupts are not failures to paper over, even with on=BaseException."""
    behaviour = Script([error()])
    with EventRecorder() as recorder, pytest.raises(error):
        colour.wrap(Fallback("x", on=BaseException), behaviour)()
    assert behaviour.calls == 1
    assert recorder.of(FallbackUsed) == []


def test_outermost_fallback_catches_an_open_breaker(colour: Colour) -> None:
    """Placed outermost, a fallback answers for an open circuit breaker."""
    clock = FakeClock()
    breaker = CircuitBreaker(minimum_calls=1, clock=clock)
    behaviour = Script([ConnectionError()])
    guarded = colour.wrap(
        Pipeline(Fallback(handler=lambda exc: type(exc).__name__), breaker), behaviour
    )
    assert guarded() == "ConnectionError"
    assert guarded() == CircuitOpenError.__name__
    assert behaviour.calls == 1  # the open breaker did not let the second call through


def test_a_fallback_inside_the_breaker_does_not_catch_its_rejection(colour: Colour) -> None:
    """Placed inside, a fallback never sees CircuitOpenError: the breaker rejects before it."""
    clock = FakeClock()
    breaker = CircuitBreaker(minimum_calls=1, clock=clock)
    breaker.open()
    with pytest.raises(CircuitOpenError):
        colour.wrap(Pipeline(breaker, Fallback("x")), Script(["real"]))()


def test_outermost_fallback_catches_a_full_bulkhead(colour: Colour) -> None:
    """A rejection by a full bulkhead is a failure like any other for an outer fallback."""
    bulkhead = Bulkhead(1)
    assert bulkhead._try_acquire()  # the test holds the only permit
    guarded = colour.wrap(
        Pipeline(Fallback("busy", on=BulkheadFullError), bulkhead), Script(["real"])
    )
    assert guarded() == "busy"
    bulkhead._release()
    assert guarded() == "real"


@pytest.mark.parametrize("kwargs", [{}, {"value": 1, "handler": lambda exc: 2}])
def test_exactly_one_of_value_and_handler(kwargs: dict[str, object]) -> None:
    """Neither or both of value and handler is a configuration error."""
    with pytest.raises(ValueError, match="value and handler"):
        Fallback(**kwargs)  # type: ignore[arg-type]


def test_handler_must_be_callable() -> None:
    """A handler that cannot be called fails at construction."""
    with pytest.raises(TypeError, match="handler"):
        Fallback(handler="not callable")  # type: ignore[arg-type]
