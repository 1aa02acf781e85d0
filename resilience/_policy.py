"""The Policy base class: decorator machinery, call-time application, shared validation.

A policy turns a function into a guarded function. Its sans-IO core makes every decision; the
two shells it provides (``_wrap_sync`` for plain functions, ``_wrap_async`` for coroutine
functions) only call the user's function, sleep through the injected clock and release what
they hold on every path. ``__call__`` picks the shell once, at decoration time.
"""

from __future__ import annotations

import functools
import inspect
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar, cast

__all__ = ["Policy"]

P = ParamSpec("P")
T = TypeVar("T")


class Policy(ABC):
    """A resilience policy: a decorator for plain and coroutine functions, and a ``Pipeline`` step.

    ``@policy`` keeps the decorated function's signature (``Callable[P, T] -> Callable[P, T]``);
    ``policy.call(fn, *args, **kwargs)`` applies it once, at call time. Coroutine functions are
    detected with ``inspect.iscoroutinefunction``; ``policy.call`` of one returns an awaitable.
    """

    __slots__ = ()

    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]:
        if inspect.iscoroutinefunction(fn):
            wrapped: Callable[..., Any] = self._wrap_async(fn)
        else:
            wrapped = self._wrap_sync(fn)
        functools.update_wrapper(wrapped, fn)
        return wrapped

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` under this policy (await the result for coroutines)."""
        if inspect.iscoroutinefunction(fn):
            return cast(T, self._wrap_async(fn)(*args, **kwargs))
        return self._wrap_sync(fn)(*args, **kwargs)

    @abstractmethod
    def _wrap_sync(self, fn: Callable[..., T]) -> Callable[..., T]:
        """Return the sync shell around ``fn``."""

    @abstractmethod
    def _wrap_async(self, fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        """Return the async shell around the coroutine function ``fn``."""
