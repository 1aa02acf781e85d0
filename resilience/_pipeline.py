"""Pipeline: several policies applied as one, outer to inner."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

from resilience import _events
from resilience._policy import Policy
from resilience._validate import check_name

__all__ = ["Pipeline"]

T = TypeVar("T")


class Pipeline(Policy):
    """Compose policies: ``Pipeline(a, b, c)(fn)`` is ``a(b(c(fn)))``.

    The first policy is the outermost. A typical order is
    ``Pipeline(Fallback, Deadline, Retry, CircuitBreaker, Bulkhead, Timeout)``: the deadline
    covers every attempt, each attempt passes the breaker and bulkhead, and the timeout bounds
    one attempt. Nested pipelines are flattened. A pipeline is itself a policy.

    With ``tracing`` on (the default) and opentelemetry-api installed, each call runs in an
    ``INTERNAL`` span that is current while it runs, so retries, breaker rejections and the
    like appear on it as events. The span is named ``name`` when one is given; an unnamed
    pipeline (``.name`` reads its kind, "pipeline", as every policy's does) names each span
    after the function it guards (its qualified name: one name per operation, as OpenTelemetry
    asks, where "pipeline" would name them all alike). ``code.function.name`` holds the
    function's module and qualified name either way. Without an SDK configured this costs one
    check per call (~0.15 µs). ``tracer_provider`` overrides the global provider.
    """

    __slots__ = ("_settings", "_span_name_given", "name", "policies", "tracer_provider", "tracing")

    def __init__(
        self,
        *policies: Policy,
        name: str | None = None,
        tracing: bool = True,
        tracer_provider: Any = None,
    ) -> None:
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
        self.name = check_name(name, "pipeline")
        if not isinstance(tracing, bool):
            raise TypeError(f"tracing must be True or False, got {tracing!r}")
        self._span_name_given = name
        self.tracing = tracing
        self.tracer_provider = tracer_provider
        self._settings: dict[str, Any] = {
            "name": name,
            "tracing": tracing,
            "tracer_provider": tracer_provider,
        }

    def __repr__(self) -> str:
        return f"Pipeline({', '.join(map(repr, self.policies))})"

    def replace(self, **changes: Any) -> Pipeline:
        """A new pipeline of the same policies with these settings bar ``changes`` (any
        constructor keyword: ``name``, ``tracing``, ``tracer_provider``)."""
        return Pipeline(*self.policies, **{**self._settings, **changes})

    def __iter__(self) -> Iterator[Policy]:
        return iter(self.policies)

    def __len__(self) -> int:
        return len(self.policies)

    def _observer(self) -> _events.Observer | None:
        return _events.observer(self.tracer_provider) if self.tracing else None

    def _span_names(self, fn: Callable[..., Any]) -> tuple[str, str]:
        """The span's name and its ``code.function.name`` (module and qualified name)."""
        qualname = getattr(fn, "__qualname__", None) or repr(fn)
        module = getattr(fn, "__module__", None)
        function = f"{module}.{qualname}" if module else qualname
        return self._span_name_given or qualname, function

    def _wrap_sync(self, fn: Callable[..., T]) -> Callable[..., T]:
        guarded = fn
        for policy in reversed(self.policies):
            guarded = policy._wrap_sync(guarded)
        observer = self._observer()
        if observer is None:
            return guarded
        span, (name, function) = observer.call, self._span_names(fn)

        def traced(*args: Any, **kwargs: Any) -> T:
            scope = span(name, function)
            if scope is None:
                return guarded(*args, **kwargs)
            with scope:
                return guarded(*args, **kwargs)

        return traced

    def _wrap_async(self, fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        guarded = fn
        for policy in reversed(self.policies):
            guarded = policy._wrap_async(guarded)
        observer = self._observer()
        if observer is None:
            return guarded
        span, (name, function) = observer.call, self._span_names(fn)

        async def traced(*args: Any, **kwargs: Any) -> T:
            scope = span(name, function)
            if scope is None:
                return await guarded(*args, **kwargs)
            with scope:
                return await guarded(*args, **kwargs)

        return traced
