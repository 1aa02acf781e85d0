"""DeadLetter: park the failed calls of a decorated function, for a replay through a handler
registered under the function's name.

Put it outermost (``Pipeline(DeadLetter(queue), Retry(...), ...)``): what it parks is what the
retries could not finish. The caller still gets the exception, with a note naming the entry.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from resilience._errors import add_note
from resilience._policy import Policy
from resilience._validate import ExceptionFilter, exception_predicate
from resilience.deadletter._queue import DeadLetterQueue

__all__ = ["DeadLetter", "handlers", "register"]

T = TypeVar("T")

# name -> the function a replay hands the entry's arguments to.
handlers: dict[str, Callable[..., Any]] = {}
_handlers_lock = threading.Lock()


def register(name: str, handler: Callable[..., Any]) -> None:
    """Make ``handler`` the function that replays of calls named ``name`` go to (a decorated
    function registers itself). A different function under a taken name is refused."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    if not callable(handler):
        raise TypeError(f"handler must be callable, got {handler!r}")
    with _handlers_lock:
        taken = handlers.get(name)
        if taken is not None and _identity(taken) != _identity(handler):
            raise ValueError(f"a different handler is registered under {name!r}: {taken!r}")
        handlers[name] = handler


def _identity(fn: Callable[..., Any]) -> tuple[str, str]:
    """Where a function was defined: a module reloaded or a function decorated again keeps it."""
    return getattr(fn, "__module__", "") or "", getattr(fn, "__qualname__", repr(fn))


class DeadLetter(Policy):
    """Park each failed call (an exception matching ``on``) in ``queue``: its ``name`` and
    JSON-serialisable arguments, and ``key(*args, **kwargs)`` when given (a call whose key is
    already queued is not queued twice).

    ``name`` is required: it is stored with every entry, so it must outlive refactors (a name
    made from the function's module and qualified name would orphan the queued entries of a
    moved function). The decorated function (what this policy wraps: inside a ``Pipeline``,
    the policies after it) is registered under it, so ``replay`` in this process hands entries
    back to it. Arguments JSON cannot hold are not parked (the note says so).
    ``BaseException`` (cancellation) is never parked.
    """

    __slots__ = ("_key", "_on", "name", "queue")

    def __init__(
        self,
        queue: DeadLetterQueue,
        *,
        name: str,
        on: ExceptionFilter = Exception,
        key: Callable[..., str | None] | None = None,
    ) -> None:
        if not isinstance(queue, DeadLetterQueue):
            raise TypeError(f"queue must be a DeadLetterQueue, got {queue!r}")
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        if key is not None and not callable(key):
            raise TypeError(f"key must be a callable or None, got {key!r}")
        self.queue = queue
        self.name = name
        self._on = exception_predicate(on, "on")
        self._key = key

    def _register(self, fn: Callable[..., Any]) -> str:
        register(self.name, fn)
        return self.name

    def _keyed(
        self, exc: BaseException, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[bool, str | None]:
        """(whether to park, the call's key); a failing ``key`` is noted on ``exc``, never
        raised in its place."""
        if self._key is None:
            return True, None
        try:
            key = self._key(*args, **kwargs)
            if key is not None and not isinstance(key, str):
                raise TypeError(f"key must return a string or None, got {type(key).__name__}")
        except Exception as bad:
            add_note(
                exc,
                f"resilience: not parked in dead-letter queue {self.queue.name!r}: "
                f"key= failed ({type(bad).__name__}: {bad})",
            )
            return False, None
        return True, key

    def _wrap_sync(self, fn: Callable[..., T]) -> Callable[..., T]:
        name = self._register(fn)
        on, queue = self._on, self.queue

        def dead_lettered(*args: Any, **kwargs: Any) -> T:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                if on(exc):
                    park, key = self._keyed(exc, args, kwargs)
                    if park:
                        queue.park_call(name, args, kwargs, key, exc)
                raise

        return dead_lettered

    def _wrap_async(self, fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        name = self._register(fn)
        on, queue = self._on, self.queue

        async def dead_lettered(*args: Any, **kwargs: Any) -> T:
            try:
                return await fn(*args, **kwargs)
            except Exception as exc:
                if on(exc):
                    park, key = self._keyed(exc, args, kwargs)
                    if park:
                        await queue.park_call_async(name, args, kwargs, key, exc)
                raise

        return dead_lettered
