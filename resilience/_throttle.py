"""AdaptiveThrottle: back off locally before the backend has to refuse (SRE client throttling).

The rule is in ``resilience._adaptive.throttle``; this module holds the lock and the RNG,
classifies outcomes and raises ``ThrottledError``.

How it combines with ``Retry`` and its ``RetryBudget``: put the throttle *inside* the retry
(``Pipeline(Retry(budget=..., on=...), AdaptiveThrottle())``), so every attempt is counted and
judged; ``Retry`` does not retry ``ThrottledError`` (a ``RejectedError``: with its default
``rejections="final"`` it ends the retries at once). The two caps then compose: the budget keeps
retries under ``ratio`` x first attempts, the throttle keeps what is sent under ``k`` x what the
backend accepts. In an outage the budget stops the retries at once and the throttle thins the
first attempts down to a trickle; when the backend recovers, the trickle's accepts lower the
refusal probability within one ``window``.
"""

from __future__ import annotations

import logging
import random
import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from resilience import _events
from resilience._adaptive.throttle import ThrottleCore, check_k
from resilience._clock import SYSTEM_CLOCK, Clock
from resilience._errors import RejectedError, ThrottledError
from resilience._policy import Policy
from resilience._validate import (
    ExceptionFilter,
    check_duration,
    check_name,
    exception_predicate,
)

__all__ = ["AdaptiveThrottle", "throttles"]

T = TypeVar("T")
_log = logging.getLogger("resilience")

# Every live throttle, so telemetry can read refusal probabilities and counts.
throttles: weakref.WeakSet[AdaptiveThrottle] = weakref.WeakSet()


class AdaptiveThrottle(Policy):
    """Refuse a share of calls locally while the backend accepts fewer than 1 in ``k``.

    Over the last ``window`` seconds (default 30; the SRE book uses 120), a call is refused with
    ``ThrottledError`` — without running it — with probability
    ``max(0, (requests - k * accepts) / (requests + 1))``, where ``requests`` counts every
    call (refused ones too) and ``accepts`` the calls the backend accepted. ``k`` >= 1
    (default 2): how many calls per accepted one may be sent.

    A call was *not* accepted when it raised an ``on`` exception (default: any ``Exception``;
    name the backend's refusals and timeouts to count application errors as accepted) or
    returned a value matching ``on_result`` (e.g. a 429 or 503 response).
    Cancellation and other ``BaseException`` count as neither. A ``RejectedError`` raised
    inside (a limiter, breaker or bulkhead after the throttle refused the call locally) is no
    outcome at all: the call is withdrawn from ``requests``, since the backend never saw it.
    ``rng`` (a ``random.Random``)
    makes refusals repeatable. Thread-safe and asyncio-safe.
    """

    __slots__ = (
        "__weakref__",
        "_clock",
        "_core",
        "_lock",
        "_refusals",
        "_rejected_on",
        "_rejected_on_result",
        "_rng",
        "_settings",
        "k",
        "name",
        "window",
    )

    def __init__(
        self,
        *,
        k: float = 2.0,
        window: float = 30.0,
        on: ExceptionFilter = Exception,
        on_result: Callable[[Any], bool] | None = None,
        name: str | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        check_k(k)
        check_duration(window, "window", allow_zero=False)
        if on_result is not None and not callable(on_result):
            raise TypeError(f"on_result must be a predicate or None, got {on_result!r}")
        name = check_name(name, "adaptive_throttle")
        if rng is not None and not isinstance(rng, random.Random):
            raise TypeError(f"rng must be a random.Random or None, got {rng!r}")
        self._settings: dict[str, Any] = {
            "k": k,
            "window": window,
            "on": on,
            "on_result": on_result,
            "name": name,
            "clock": clock,
            "rng": rng,
        }
        self.k = float(k)
        self.window = float(window)
        self.name = name
        self._rejected_on = exception_predicate(on, "on")
        self._rejected_on_result = on_result
        self._clock = clock or SYSTEM_CLOCK
        self._rng = rng if rng is not None else random.Random()
        self._core = ThrottleCore(self.k, self.window)
        self._lock = threading.Lock()
        self._refusals = 0
        throttles.add(self)

    def __repr__(self) -> str:
        return f"AdaptiveThrottle(k={self.k!r}, window={self.window!r}, name={self.name!r})"

    def replace(self, **changes: Any) -> AdaptiveThrottle:
        """A new throttle with these settings bar ``changes`` (any constructor keyword) and
        empty counts (the transports keep one per origin)."""
        return AdaptiveThrottle(**{**self._settings, **changes})

    @property
    def probability(self) -> float:
        """The probability that a call starting now is refused."""
        now = self._clock.now()
        with self._lock:
            return self._core.probability(now)

    @property
    def refusals(self) -> int:
        """Calls refused locally since construction."""
        return self._refusals

    # -- steps the shells call -----------------------------------------------------------------

    def _admit(self) -> float:
        """Count a call and return when it was admitted, or raise ``ThrottledError``."""
        now = self._clock.now()
        with self._lock:
            refused = self._core.admit(now, self._rng.random())
            if refused:
                self._refusals += 1
        if refused:
            if _events.listeners:
                _events.emit(_events.Throttled(self.name, refused))
            raise ThrottledError(self.name, refused)
        return now

    def _withdraw(self, admitted_at: float) -> None:
        """A policy inside refused the call locally: it was no request to the backend."""
        with self._lock:
            self._core.withdraw(admitted_at)

    def _accepted(self) -> None:
        now = self._clock.now()
        with self._lock:
            self._core.accepted(now)

    def _finished(self, result: object) -> None:
        judge = self._rejected_on_result
        if judge is None or not self._judge(judge, result):
            self._accepted()

    def _failed(self, exc: Exception) -> None:
        if not self._judge(self._rejected_on, exc):
            self._accepted()

    def _judge(self, predicate: Callable[[Any], bool], outcome: object) -> bool:
        """Apply a user predicate; one that raises counts a refusal by the backend."""
        try:
            return bool(predicate(outcome))
        except Exception:
            _log.exception("throttle %r: a rejection predicate raised", self.name)
            return True

    # -- shells --------------------------------------------------------------------------------

    def _wrap_sync(self, fn: Callable[..., T]) -> Callable[..., T]:
        admit, withdraw = self._admit, self._withdraw
        finished, failed = self._finished, self._failed

        def throttled(*args: Any, **kwargs: Any) -> T:
            admitted = admit()
            try:
                result = fn(*args, **kwargs)
            except RejectedError:
                withdraw(admitted)  # refused inside, never sent: no outcome
                raise
            except Exception as exc:
                failed(exc)
                raise
            finished(result)
            return result

        return throttled

    def _wrap_async(self, fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        admit, withdraw = self._admit, self._withdraw
        finished, failed = self._finished, self._failed

        async def throttled(*args: Any, **kwargs: Any) -> T:
            admitted = admit()
            try:
                result = await fn(*args, **kwargs)
            except RejectedError:
                withdraw(admitted)  # refused inside, never sent: no outcome
                raise
            except Exception as exc:
                failed(exc)
                raise
            finished(result)
            return result

        return throttled
