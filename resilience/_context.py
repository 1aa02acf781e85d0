"""Per-call state carried in context variables: the nearest deadline, and the idempotency key
of the request being served (outgoing keyed calls derive theirs from it).

A ``Deadline`` or ``Timeout`` publishes "this operation must end by ``at`` on ``clock``". Nested
scopes keep the earliest end, so code deep in a call stack sees the tightest budget through
``remaining()``. Context variables follow asyncio tasks; for threads, run the work in a copied
context (``contextvars.copy_context().run``) to carry the deadline along.
"""

from __future__ import annotations

import hashlib
import threading
from contextvars import ContextVar, Token
from typing import NamedTuple

from resilience._clock import Clock

__all__ = [
    "DeadlineScope",
    "KeyScope",
    "current_key_scope",
    "current_deadline",
    "enter_deadline",
    "exit_deadline",
    "parse_deadline",
    "end_serving_key",
    "remaining",
    "serving_key",
    "uuid_text",
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
) -> tuple[Token[DeadlineScope | None] | None, DeadlineScope]:
    """Publish a deadline ``seconds`` from now, unless an enclosing one ends sooner: then that
    one stays in force and nothing is published (the token is ``None``). Return the token for
    ``exit_deadline`` and the scope in force."""
    outer = _deadline.get()
    if outer is not None and outer.remaining() <= seconds:
        return None, outer
    scope = DeadlineScope(clock.now() + seconds, clock)
    return _deadline.set(scope), scope


def exit_deadline(token: Token[DeadlineScope | None] | None) -> None:
    """Restore the deadline that was in force before ``enter_deadline`` (nothing to do when it
    published nothing)."""
    if token is not None:
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


def uuid_text(raw: bytes, version: int) -> str:
    """16 bytes as a UUID string with ``version`` and the RFC 4122 variant set, formatted as
    ``str(uuid.UUID(...))`` would (at a third of its cost: this runs per keyed request)."""
    octets = bytearray(raw)
    octets[6] = (octets[6] & 0x0F) | (version << 4)
    octets[8] = (octets[8] & 0x3F) | 0x80
    h = octets.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class KeyScope:
    """The idempotency key of the request being served, and the keys derived from it.

    A handler that runs again for a retried request (its first run crashed after calling
    downstream) makes the same outgoing calls; deriving each call's key from the incoming key,
    the target and how many calls to that target came before, gives them the same keys as the
    first run had, so the downstream answers from its records instead of acting twice
    (Brandur Leach's "foreign state mutations" with derived keys).
    """

    __slots__ = ("_counts", "_lock", "key")

    def __init__(self, key: str) -> None:
        self.key = key
        self._counts: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def derive(self, method: str, url: str) -> str:
        """A UUID-shaped key for the next ``method url`` call of this request (version 8:
        derived from the incoming key by SHA-256)."""
        with self._lock:
            number = self._counts.get((method, url), 0)
            self._counts[method, url] = number + 1
        digest = hashlib.sha256(f"{self.key}\0{method}\0{url}\0{number}".encode()).digest()
        return uuid_text(digest[:16], 8)  # version 8 (RFC 9562): custom, here SHA-256-based


_key_scope: ContextVar[KeyScope | None] = ContextVar("resilience_key_scope", default=None)

current_key_scope = _key_scope.get


def serving_key(key: str) -> Token[KeyScope | None]:
    """Publish the key of the request being served, for ``end_serving_key`` to withdraw."""
    return _key_scope.set(KeyScope(key))


def end_serving_key(token: Token[KeyScope | None]) -> None:
    _key_scope.reset(token)
