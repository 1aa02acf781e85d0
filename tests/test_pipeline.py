"""Pipeline: composition order, flattening, validation, and both colours."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from resilience import Backoff, Fallback, Pipeline, Policy, Retry
from resilience.testing import FakeClock
from tests.conftest import Colour, Script

T = TypeVar("T")
NO_WAIT = Backoff(initial=0.0, maximum=0.0)


class Trace(Policy):
    """A minimal policy that logs when a call enters and leaves it."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    def _wrap_sync(self, fn: Callable[..., T]) -> Callable[..., T]:
        def traced(*args: Any, **kwargs: Any) -> T:
            self.log.append(f"{self.name}>")
            try:
                return fn(*args, **kwargs)
            finally:
                self.log.append(f"<{self.name}")

        return traced

    def _wrap_async(self, fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        async def traced(*args: Any, **kwargs: Any) -> T:
            self.log.append(f"{self.name}>")
            try:
                return await fn(*args, **kwargs)
            finally:
                self.log.append(f"<{self.name}")

        return traced


def test_policies_apply_outer_to_inner(colour: Colour) -> None:
    """``Pipeline(a, b, c)(fn)`` enters a, then b, then c, calls fn, and leaves in reverse."""
    log: list[str] = []

    def behaviour() -> str:
        log.append("call")
        return "ok"

    pipeline = Pipeline(Trace("a", log), Trace("b", log), Trace("c", log))
    assert colour.wrap(pipeline, behaviour)() == "ok"
    assert log == ["a>", "b>", "c>", "call", "<c", "<b", "<a"]


def test_first_policy_is_outermost(colour: Colour, clock: FakeClock) -> None:
    """Fallback outside Retry sees only the final failure; inside, Retry never sees one."""
    outside = Script([ConnectionError()])
    policy = Pipeline(Fallback("fallback"), Retry(3, backoff=NO_WAIT, clock=clock))
    assert colour.wrap(policy, outside)() == "fallback"
    assert outside.calls == 3
    inside = Script([ConnectionError()])
    policy = Pipeline(Retry(3, backoff=NO_WAIT, clock=clock), Fallback("fallback"))
    assert colour.wrap(policy, inside)() == "fallback"
    assert inside.calls == 1


def test_nested_pipelines_are_flattened(colour: Colour) -> None:
    """A pipeline inside a pipeline contributes its policies in order, and runs the same."""
    log: list[str] = []
    a, b, c, d = (Trace(name, log) for name in "abcd")
    pipeline = Pipeline(a, Pipeline(b, Pipeline(c)), d)
    assert pipeline.policies == (a, b, c, d)
    assert len(pipeline) == 4
    assert list(pipeline) == [a, b, c, d]
    colour.wrap(pipeline, lambda: log.append("call"))()
    assert log == ["a>", "b>", "c>", "d>", "call", "<d", "<c", "<b", "<a"]


def test_pipeline_keeps_the_function_identity(colour: Colour, clock: FakeClock) -> None:
    """A pipeline used as a decorator keeps name, docstring and ``__wrapped__``, and the
    colour of the function it decorates."""
    pipeline = Pipeline(Fallback("x"), Retry(2, backoff=NO_WAIT, clock=clock))
    behaviour = Script([ConnectionError(), "ok"])

    if colour.is_async:

        async def charge(amount: int) -> object:
            """Charge the card."""
            return (behaviour(), amount)

    else:

        def charge(amount: int) -> object:  # type: ignore[misc]
            """Charge the card."""
            return (behaviour(), amount)

    decorated = pipeline(charge)
    assert decorated.__name__ == "charge"
    assert decorated.__doc__ == "Charge the card."
    assert decorated.__wrapped__ is charge  # type: ignore[attr-defined]
    assert inspect.iscoroutinefunction(decorated) is colour.is_async
    result = asyncio.run(decorated(5)) if colour.is_async else decorated(5)
    assert result == ("ok", 5)
    assert behaviour.calls == 2  # retried once inside the pipeline


def test_call_applies_the_pipeline(clock: FakeClock) -> None:
    """``pipeline.call(fn, *args, **kwargs)`` runs fn under the policies with its arguments."""
    pipeline = Pipeline(Retry(2, backoff=NO_WAIT, clock=clock))
    flaky = Script([ConnectionError(), "ok"])
    assert pipeline.call(lambda a, b=0: (flaky(), a + b), 1, b=2) == ("ok", 3)
    assert flaky.calls == 2


def test_call_of_a_coroutine_function_returns_an_awaitable(clock: FakeClock) -> None:
    """``pipeline.call`` of a coroutine function gives an awaitable run under the policies."""
    pipeline = Pipeline(Retry(2, backoff=NO_WAIT, clock=clock))
    flaky = Script([ConnectionError(), "ok"])

    async def add(a: int, b: int = 0) -> tuple[object, int]:
        return flaky(), a + b

    assert asyncio.run(pipeline.call(add, 1, b=2)) == ("ok", 3)
    assert flaky.calls == 2


def test_empty_and_foreign_policies_are_rejected() -> None:
    """Pipeline() and non-policies fail at construction."""
    with pytest.raises(ValueError, match="policies"):
        Pipeline()
    with pytest.raises(TypeError, match="policies"):
        Pipeline(Retry(), "retry")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="policies"):
        Pipeline(lambda fn: fn)  # type: ignore[arg-type]
