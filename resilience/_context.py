"""Per-call state carried in context variables: the nearest deadline.

A ``Deadline`` or ``Timeout`` publishes "this operation must end by ``at`` on ``clock``". Nested
scopes keep the earliest end, so code deep in a call stack sees the tightest budget through
``remaining()``. Context variables follow asyncio tasks; for threads, run the work in a copied
context (``contextvars.copy_context().run``) to carry the deadline along.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from typing import NamedTuple

from resilience._clock import Clock

__all__ = [
    "DeadlineScope",
    "current_deadline",
    "enter_deadline",
    "exit_deadline",
    "parse_deadline",
    "remaining",
]


class DeadlineScope(NamedTuple):
    """The end of the current operation, ``at`` seconds on ``clock``."""

    at: float
    clock: Clock

    def remaining(self) -> float:
        """Seconds left; negative once the deadline has passed."""
        return self.at - self.clock.now()


_deadline: ContextVar[DeadlineScope | None] = ContextVar("resilience_deadline", default=None)

current_deadline = _deadline.get


def remaining() -> float | None:
    """Return the seconds left before the nearest deadline, or ``None`` when there is none.

    The value is never negative: ``0.0`` means the deadline has passed.
    """
    scope = _deadline.get()
    if scope is None:
        return None
    left = scope.at - scope.clock.now()
    return left if left > 0.0 else 0.0


def enter_deadline(
    seconds: float, clock: Clock
) -> tuple[Token[DeadlineScope | None], DeadlineScope]:
    """Publish a deadline ``seconds`` from now, unless an enclosing one ends sooner."""
    at = clock.now() + seconds
    outer = _deadline.get()
    if outer is not None and outer.remaining() <= seconds:
        scope = outer
    else:
        scope = DeadlineScope(at, clock)
    return _deadline.set(scope), scope


def exit_deadline(token: Token[DeadlineScope | None]) -> None:
    """Restore the deadline that was in force before ``enter_deadline``."""
    _deadline.reset(token)


def parse_deadline(
    value: str | None, default: float | None = None, maximum: float | None = None
) -> float | None:
    """Seconds left, from a ``Request-Timeout-Ms`` field value (integer milliseconds).

    A missing or malformed value (not 1 to 15 ASCII digits) gives ``default``; the result is
    capped at ``maximum``. Never raises: a header from the network is not trusted.
    """
    seconds = default
    if value is not None:
        digits = value.strip()
        if 0 < len(digits) <= 15 and digits.isascii() and digits.isdigit():
            seconds = int(digits) / 1000.0
    if seconds is not None and maximum is not None and seconds > maximum:
        seconds = maximum
    return seconds
