"""Fallback: replace a failure with a value, or with what a handler makes of the exception."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from resilience import _events
from resilience._policy import Policy
from resilience._validate import ExceptionFilter, exception_predicate

__all__ = ["Fallback"]

T = TypeVar("T")
_MISSING: Any = object()


class Fallback(Policy):
    """On a failure matching ``on``, return ``value`` — or ``handler(exc)`` — instead.

    Give exactly one of ``value`` and ``handler``. The handler receives the exception; for a
    coroutine function it may be a coroutine function too (it is awaited), for a plain function
    it must be plain (``TypeError`` at decoration otherwise). ``BaseException``
    (cancellation, ``KeyboardInterrupt``) is never replaced. Put it outermost in a ``Pipeline``
    to also catch ``CircuitOpenError``, ``BulkheadFullError`` and friends.
    """

    __slots__ = ("_handler", "_matches", "_settings", "_value", "name")

    def __init__(
        self,
        value: Any = _MISSING,
        *,
        handler: Callable[[Exception], Any] | None = None,
        on: ExceptionFilter = Exception,
        name: str = "fallback",
    ) -> None:
        if (value is _MISSING) == (handler is None):
            raise ValueError("give exactly one of value and handler")
        if handler is not None and not callable(handler):
            raise TypeError(f"handler must be callable, got {handler!r}")
        self._value = value
        self._handler = handler
        self._matches = exception_predicate(on, "on")
        self.name = name
        self._settings: dict[str, Any] = {
            "value": value,
            "handler": handler,
            "on": on,
            "name": name,
        }

    def __repr__(self) -> str:
        what = f"handler={self._handler!r}" if self._handler else f"value={self._value!r}"
        return f"Fallback({what})"

    def replace(self, **changes: Any) -> Fallback:
        """A new fallback with these settings bar ``changes`` (any constructor keyword); a
        ``value`` or ``handler`` given replaces whichever of the two this one has."""
        settings = self._settings
        if "value" in changes or "handler" in changes:
            settings = {**settings, "value": _MISSING, "handler": None}
        return Fallback(**{**settings, **changes})

    def _applies(self, exc: Exception) -> bool:
        if not self._matches(exc):
            return False
        if _events.listeners:
            _events.emit(_events.FallbackUsed(self.name, type(exc).__qualname__))
        return True

    def _wrap_sync(self, fn: Callable[..., T]) -> Callable[..., T]:
        applies, handler, value = self._applies, self._handler, self._value
        if inspect.iscoroutinefunction(handler):
            # It would return an un-awaited coroutine in place of a value.
            raise TypeError(
                f"handler {handler!r} is a coroutine function: it can only guard coroutine "
                "functions"
            )

        def guarded(*args: Any, **kwargs: Any) -> T:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                if not applies(exc):
                    raise
                return handler(exc) if handler is not None else value  # type: ignore[no-any-return]

        return guarded

    def _wrap_async(self, fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        applies, handler, value = self._applies, self._handler, self._value

        async def guarded(*args: Any, **kwargs: Any) -> T:
            try:
                return await fn(*args, **kwargs)
            except Exception as exc:
                if not applies(exc):
                    raise
                if handler is None:
                    return value  # type: ignore[no-any-return]
                replacement = handler(exc)
                if inspect.isawaitable(replacement):
                    replacement = await replacement
                return replacement  # type: ignore[no-any-return]

        return guarded
