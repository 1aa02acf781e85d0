"""Backoff: the delay before each retry, as pure and seedable math."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from typing import Any, Literal

from resilience._validate import check_duration

__all__ = ["JITTER_MODES", "Backoff", "Jitter"]

Jitter = Literal["full", "equal", "decorrelated", "none"]
JITTER_MODES: frozenset[str] = frozenset({"full", "equal", "decorrelated", "none"})


class Backoff:
    """Exponential backoff with jitter; ``delay(n)`` is the wait before retry ``n`` (1-based).

    With ``ceiling(n) = min(maximum, initial * multiplier ** (n - 1))`` the delay is drawn from:

    - ``"full"`` (default): ``[0, ceiling(n)]`` — the AWS "full jitter" that spreads a herd best;
    - ``"equal"``: ``[ceiling(n) / 2, ceiling(n)]``;
    - ``"decorrelated"``: ``[initial, min(maximum, 3 * previous)]``, where ``previous`` is the
      delay before the last retry (``initial`` for the first);
    - ``"none"``: exactly ``ceiling(n)``.

    All durations are float seconds. ``rng`` (a ``random.Random``) makes draws repeatable; by
    default a private generator seeded from the OS is used. Instances are immutable and safe to
    share between threads and policies.
    """

    __slots__ = ("_rng", "initial", "jitter", "maximum", "multiplier")

    _rng: random.Random
    initial: float
    maximum: float
    multiplier: float
    jitter: Jitter

    def __init__(
        self,
        initial: float = 0.1,
        maximum: float = 10.0,
        multiplier: float = 2.0,
        jitter: Jitter = "full",
        *,
        rng: random.Random | None = None,
    ) -> None:
        check_duration(initial, "initial")
        check_duration(maximum, "maximum")
        if maximum < initial:
            raise ValueError(f"maximum must be >= initial ({initial!r}), got {maximum!r}")
        if isinstance(multiplier, bool) or not isinstance(multiplier, (int, float)):
            raise TypeError(f"multiplier must be a number >= 1, got {multiplier!r}")
        if not (multiplier >= 1 and math.isfinite(multiplier)):
            raise ValueError(f"multiplier must be a finite number >= 1, got {multiplier!r}")
        if jitter not in JITTER_MODES:
            raise ValueError(f"jitter must be one of {sorted(JITTER_MODES)}, got {jitter!r}")
        object.__setattr__(self, "initial", float(initial))
        object.__setattr__(self, "maximum", float(maximum))
        object.__setattr__(self, "multiplier", float(multiplier))
        object.__setattr__(self, "jitter", jitter)
        object.__setattr__(self, "_rng", rng if rng is not None else random.Random())

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Backoff is immutable; cannot set {name!r}")

    def __repr__(self) -> str:
        return (
            f"Backoff(initial={self.initial!r}, maximum={self.maximum!r}, "
            f"multiplier={self.multiplier!r}, jitter={self.jitter!r})"
        )

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        # The default protocol restores slots with setattr, which an immutable Backoff refuses:
        # rebuild through the constructor so copy, deepcopy and pickle work.
        return _restore, (self.initial, self.maximum, self.multiplier, self.jitter, self._rng)

    def replace(self, **changes: Any) -> Backoff:
        """A new ``Backoff`` with these settings bar ``changes`` (any constructor keyword)."""
        settings: dict[str, Any] = {
            "initial": self.initial,
            "maximum": self.maximum,
            "multiplier": self.multiplier,
            "jitter": self.jitter,
            "rng": self._rng,
        }
        return Backoff(**{**settings, **changes})

    def ceiling(self, retry: int) -> float:
        """The upper bound of the delay before retry ``retry`` (1-based), before jitter."""
        try:
            grown = self.initial * self.multiplier ** (retry - 1)
        except OverflowError:  # the growth factor alone is past any float: work in logs
            if self.initial <= 0.0:
                return 0.0  # 0 stays 0
            # A tiny initial can bring the product back under the maximum (1e-308 * 2**1008).
            logged = math.log(self.initial) + (retry - 1) * math.log(self.multiplier)
            if logged >= math.log(self.maximum):
                return self.maximum
            grown = math.exp(logged)
        return grown if grown < self.maximum else self.maximum

    def delay(self, retry: int, previous: float | None = None) -> float:
        """Draw the delay before retry ``retry``; ``previous`` feeds decorrelated jitter."""
        jitter = self.jitter
        if jitter == "full":
            return self._rng.uniform(0.0, self.ceiling(retry))
        if jitter == "equal":
            top = self.ceiling(retry)
            return top / 2 + self._rng.uniform(0.0, top / 2)
        if jitter == "none":
            return self.ceiling(retry)
        # decorrelated: each draw is relative to the previous one, bounded by [initial, maximum].
        last = self.initial if previous is None or previous < self.initial else previous
        top = min(self.maximum, 3 * last)
        return self._rng.uniform(self.initial, top) if top > self.initial else self.initial

    def delays(self, retries: int) -> Iterator[float]:
        """Yield the delays before retries 1..``retries`` (a preview for docs and tests)."""
        previous: float | None = None
        for retry in range(1, retries + 1):
            previous = self.delay(retry, previous)
            yield previous


def _restore(
    initial: float, maximum: float, multiplier: float, jitter: Jitter, rng: random.Random
) -> Backoff:
    return Backoff(initial, maximum, multiplier, jitter, rng=rng)
