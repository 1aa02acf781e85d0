"""Static checks (run by ``mypy --strict tests/typing``): decorators keep signatures."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from typing_extensions import assert_type

from resilience import (
    Bulkhead,
    CircuitBreaker,
    Deadline,
    Fallback,
    Pipeline,
    Retry,
    Timeout,
    remaining,
)


@Retry(attempts=3, on=ConnectionError)
def charge(order_id: str, amount: int = 0) -> bytes:
    return order_id.encode() * amount


@Pipeline(Deadline(5.0), Retry(), CircuitBreaker("payments"), Bulkhead(4), Timeout(1.0))
async def refund(order_id: str) -> int:
    return len(order_id)


@Fallback(0)
@CircuitBreaker()
def count(items: list[str]) -> int:
    return len(items)


assert_type(charge("a", amount=2), bytes)
pending = refund("a")
_ = assert_type(pending, Coroutine[Any, Any, int])
pending.close()
assert_type(count(["x"]), int)
assert_type(Retry().call(charge, "a", 1), bytes)
assert_type(remaining(), float | None)

# replace() keeps the kind: a Deadline's copy is a Deadline, not its base class.
assert_type(Timeout(1.0).replace(seconds=2.0), Timeout)
assert_type(Deadline(1.0).replace(seconds=2.0), Deadline)
assert_type(Fallback(0).replace(value=1), Fallback)
assert_type(Pipeline(Retry()).replace(tracing=False), Pipeline)
