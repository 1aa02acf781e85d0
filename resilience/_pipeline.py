"""Pipeline: several policies applied as one, outer to inner."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

from resilience._policy import Policy

__all__ = ["Pipeline"]

T = TypeVar("T")


class Pipeline(Policy):
    """Compose policies: ``Pipeline(a, b, c)(fn)`` is ``a(b(c(fn)))``.

    The first policy is the outermost. A typical order is
    ``Pipeline(Fallback, Deadline, Retry, CircuitBreaker, Bulkhead, Timeout)``: the deadline
    covers every attempt, each attempt passes the breaker and bulkhead, and the timeout bounds
    one attempt. Nested pipelines are flattened. A pipeline is itself a policy.
    """

    __slots__ = ("policies",)

    def __init__(self, *policies: Policy) -> None:
        if not policies:
            raise ValueError("policies must name at least one policy")
        flat: list[Policy] = []
        for policy in policies:
            if isinstance(policy, Pipeline):
                flat.extend(policy.policies)
            elif isinstance(policy, Policy):
                flat.append(policy)
            else:
                raise TypeError(f"policies must be Policy instances, got {policy!r}")
        self.policies: tuple[Policy, ...] = tuple(flat)

    def __repr__(self) -> str:
        return f"Pipeline({', '.join(map(repr, self.policies))})"

    def __iter__(self) -> Iterator[Policy]:
        return iter(self.policies)

    def __len__(self) -> int:
        return len(self.policies)

    def _wrap_sync(self, fn: Callable[..., T]) -> Callable[..., T]:
        for policy in reversed(self.policies):
            fn = policy._wrap_sync(fn)
        return fn

    def _wrap_async(self, fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        for policy in reversed(self.policies):
            fn = policy._wrap_async(fn)
        return fn
