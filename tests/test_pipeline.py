"""Pipeline: composition order, flattening, validation, and both colours."""

from __future__ import annotations

import asyncio

import pytest

from resilience import Backoff, Fallback, Pipeline, Retry
from resilience.testing import FakeClock
from tests.conftest import Colour, Script

NO_WAIT = Backoff(initial=0.0, maximum=0.0)


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


def test_nested_pipelines_are_flattened() -> None:
    """A pipeline inside a pipeline contributes its policies in order."""
    retry, fallback, other = Retry(), Fallback(1), Retry(2)
    pipeline = Pipeline(fallback, Pipeline(retry, other))
    assert pipeline.policies == (fallback, retry, other)
    assert len(pipeline) == 3
    assert list(pipeline) == [fallback, retry, other]


def test_pipeline_keeps_the_function_identity() -> None:
    """A pipeline used as a decorator keeps name and ``__wrapped__``; coroutines stay async."""

    def charge() -> str:
        return "ok"

    async def refund() -> str:
        return "ok"

    pipeline = Pipeline(Retry(), Fallback("x"))
    assert pipeline(charge).__name__ == "charge"
    assert pipeline(charge).__wrapped__ is charge  # type: ignore[attr-defined]
    assert asyncio.iscoroutinefunction(pipeline(refund))


def test_call_applies_the_pipeline(clock: FakeClock) -> None:
    """``pipeline.call(fn, *args, **kwargs)`` passes the arguments through."""
    pipeline = Pipeline(Retry(2, backoff=NO_WAIT, clock=clock))
    assert pipeline.call(lambda a, b=0: a + b, 1, b=2) == 3


def test_empty_and_foreign_policies_are_rejected() -> None:
    """Pipeline() and non-policies fail at construction."""
    with pytest.raises(ValueError, match="policies"):
        Pipeline()
    with pytest.raises(TypeError, match="policies"):
        Pipeline(Retry(), "retry")  # type: ignore[arg-type]
