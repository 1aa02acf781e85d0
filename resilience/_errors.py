"""The exceptions that resilience raises itself.

User failures are never wrapped: when a policy gives up, the caller gets the original exception
(with a PEP 678 note saying why). The classes below are for what the policies decide on their own::

    Exception
    └── ResilienceError                  base of everything raised by a policy
        ├── RejectedError                a policy refused the call locally: nothing was sent
        │   ├── CircuitOpenError         a breaker rejected the call without running it
        │   ├── BulkheadFullError        no concurrency permit, and no room (or time) to wait
        │   ├── RateLimitedError         over the rate, and waiting would take too long
        │   ├── ConcurrencyLimitedError  over the adaptive concurrency limit, no room to wait
        │   └── ThrottledError           refused locally: the backend accepts too little
        └── DeadlineExceededError        a Timeout or Deadline ran out (also a TimeoutError)

Rejections carry data: the policy's name and, where it is known, ``retry_after`` — the seconds
after which the same call may be admitted. They pickle with their data and their notes.

A ``RejectedError`` says nothing about the dependency: the call never left this process. So a
policy that judges outcomes treats one raised from inside it as *no outcome* — the throttle
un-counts the request, the breaker frees the permit without recording, the adaptive limit takes
no sample — and ``Retry`` does not retry one unless told to (``rejections="wait"``). A
``DeadlineExceededError`` is not a rejection: the call ran (or waited) until time was up.
"""

from __future__ import annotations

import sys
from typing import Any

if sys.version_info >= (3, 11):
    _Timeout = TimeoutError
else:  # 3.10: asyncio.TimeoutError is not yet the builtin; code catching either catches ours
    import asyncio

    class _Timeout(TimeoutError, asyncio.TimeoutError):
        """Both timeouts of Python 3.10, as one base."""


__all__ = [
    "BulkheadFullError",
    "add_note",
    "CircuitOpenError",
    "ConcurrencyLimitedError",
    "DeadlineExceededError",
    "RateLimitedError",
    "RejectedError",
    "ResilienceError",
    "ThrottledError",
]


class ResilienceError(Exception):
    """Base class of the errors raised by resilience policies themselves."""


class RejectedError(ResilienceError):
    """A policy refused the call locally, without running it: nothing was sent.

    Every rejection has the refusing policy's ``name``; ``kind`` names the kind of policy
    ("circuit breaker", "bulkhead", ...) for messages and notes. Catch this class to handle
    every local refusal at once (e.g. answer 503 without calling the dependency).
    """

    kind = "policy"
    name: str


class CircuitOpenError(RejectedError):
    """The circuit breaker ``name`` is open (or its half-open trials are taken).

    ``retry_after`` is the number of seconds until the breaker admits trial calls again; it is
    ``0.0`` when the breaker is already half-open and only waits for its trials to finish.
    """

    kind = "circuit breaker"

    def __init__(self, name: str, retry_after: float) -> None:
        self.name = name
        self.retry_after = retry_after
        super().__init__(f"circuit breaker {name!r} is open; retry after {retry_after:.3f}s")

    def __reduce__(self) -> tuple[type[CircuitOpenError], tuple[str, float], dict[str, Any]]:
        return (type(self), (self.name, self.retry_after), self.__dict__)


class BulkheadFullError(RejectedError):
    """The bulkhead ``name`` had no free permit and its queue was full or the wait ran out."""

    kind = "bulkhead"

    def __init__(self, name: str, max_concurrent: int) -> None:
        self.name = name
        self.max_concurrent = max_concurrent
        super().__init__(f"bulkhead {name!r} is full ({max_concurrent} concurrent calls)")

    def __reduce__(self) -> tuple[type[BulkheadFullError], tuple[str, int], dict[str, Any]]:
        return (type(self), (self.name, self.max_concurrent), self.__dict__)


class RateLimitedError(RejectedError):
    """The rate limiter ``name`` refused the call; it may be admitted after ``retry_after`` s."""

    kind = "rate limiter"

    def __init__(self, name: str, retry_after: float) -> None:
        self.name = name
        self.retry_after = retry_after
        super().__init__(f"rate limiter {name!r} refused the call; retry after {retry_after:.3f}s")

    def __reduce__(self) -> tuple[type[RateLimitedError], tuple[str, float], dict[str, Any]]:
        return (type(self), (self.name, self.retry_after), self.__dict__)


class ConcurrencyLimitedError(RejectedError):
    """``name`` had ``in_flight`` calls at its adaptive ``limit`` and no room (or time) to queue.

    ``retry_after`` is a hint in seconds (about one call's duration); a server answers 503 with
    it as ``Retry-After``.
    """

    kind = "adaptive concurrency limit"

    def __init__(self, name: str, limit: int, in_flight: int, retry_after: float) -> None:
        self.name = name
        self.limit = limit
        self.in_flight = in_flight
        self.retry_after = retry_after
        super().__init__(
            f"adaptive concurrency limit {name!r} reached ({in_flight} in flight, "
            f"limit {limit}); retry after {retry_after:.3f}s"
        )

    def __reduce__(
        self,
    ) -> tuple[type[ConcurrencyLimitedError], tuple[str, int, int, float], dict[str, Any]]:
        data = (self.name, self.limit, self.in_flight, self.retry_after)
        return (type(self), data, self.__dict__)


class ThrottledError(RejectedError):
    """The client-side throttle ``name`` refused the call locally, with ``probability``.

    The backend accepted too few of the recent calls (``AdaptiveThrottle``); nothing was sent.
    """

    kind = "throttle"

    def __init__(self, name: str, probability: float) -> None:
        self.name = name
        self.probability = probability
        super().__init__(
            f"throttle {name!r} refused the call locally (refusing {probability:.0%} of calls)"
        )

    def __reduce__(self) -> tuple[type[ThrottledError], tuple[str, float], dict[str, Any]]:
        return (type(self), (self.name, self.probability), self.__dict__)


class DeadlineExceededError(ResilienceError, _Timeout):
    """A ``Timeout`` or ``Deadline`` of ``timeout`` seconds ran out before the call finished."""

    def __init__(self, name: str, timeout: float) -> None:
        self.name = name
        self.timeout = timeout
        super().__init__(f"{name} of {timeout:.3f}s exceeded")

    def __reduce__(self) -> tuple[type[DeadlineExceededError], tuple[str, float], dict[str, Any]]:
        return (type(self), (self.name, self.timeout), self.__dict__)


def add_note(exc: BaseException, note: str) -> None:
    """Attach a PEP 678 note (on Python 3.10, the ``__notes__`` list that tools read)."""
    if hasattr(exc, "add_note"):
        exc.add_note(note)
    else:
        exc.__notes__ = [*getattr(exc, "__notes__", ()), note]  # type: ignore[attr-defined]
