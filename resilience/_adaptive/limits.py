"""Concurrency limits that move with what calls measure: AIMD on drops, Gradient2 and Vegas on
latency.

Each algorithm is a small state machine fed one sample per finished call —
``update(rtt, in_flight, dropped, now)`` — and returns the new limit (an int >= 1). ``rtt`` is
the call's duration in seconds; ``in_flight`` the number of calls in flight when it started,
itself included; ``dropped`` says the call timed out or the dependency refused it (429, 503,
a rejection of its own). Calls that failed for other reasons are not samples at all. Not
thread-safe: the owner calls it under its lock.

The rules follow Netflix's concurrency-limits (``AIMDLimit``, ``Gradient2Limit``,
``VegasLimit``), restated:

- **AIMD**: a drop (or an ``rtt`` at or above ``timeout``) multiplies the limit by
  ``backoff_ratio`` (and takes at least 1 off); a success while at least half the limit is in use
  adds 1; a success with less in use leaves it alone (the caller, not the dependency, limits).
- **Gradient2**: ``long`` is an exponential average of ``rtt`` over ``long_window`` samples (a
  plain mean for the first ``warmup`` samples); when ``long`` exceeds twice the sample it is
  cut by 10 % (latency came back down after a long overload). While fewer than half the limit
  are in flight nothing else changes. Otherwise ``gradient = clamp(long / rtt, 0.5, 1)``,
  ``target = limit * gradient + queue_size`` and ``limit += smoothing * (target - limit)``,
  clamped to ``[min_limit, max_limit]``. Unlike Netflix's, a drop counts as the steepest
  gradient (0.5): a dependency that refuses fast must not look like one that answers fast.
  Under a sustained overload ``long`` catches up with the sample and the limit creeps up until
  the samples' noise holds it (about ``queue_size`` / E[1 - gradient]): it follows changes
  well and a steady queue less so.
- **Vegas** (TCP Vegas): ``rtt_noload`` is the smallest ``rtt`` seen (re-learnt from the next
  sample every ``probe_multiplier * limit * jitter`` samples, ``jitter`` drawn from ``rng`` in
  [0.5, 1)), and ``queue = ceil(limit * (1 - rtt_noload / rtt))`` estimates how many calls wait.
  With ``step = max(1, int(log10(limit)))``: a drop takes ``step`` off; while fewer than half
  are in flight nothing changes; otherwise a queue of at most ``step`` adds ``6 * step``, one
  under ``3 * step`` adds ``step``, one over ``6 * step`` takes ``step`` off. A sample that sets
  (or re-probes) ``rtt_noload`` changes nothing else. It holds a queue of 3-6 calls whatever
  the latency's spread, at the price of trusting the smallest latency it saw.
"""

from __future__ import annotations

import math
import random
from typing import Any, Protocol

from resilience._validate import check_duration, check_positive_int

__all__ = ["AimdLimit", "Gradient2Limit", "LimitAlgorithm", "VegasLimit", "WindowedLimit"]


class LimitAlgorithm(Protocol):
    """What ``AdaptiveConcurrency`` needs from an algorithm (``AimdLimit``, ``Gradient2Limit``)."""

    @property
    def limit(self) -> int: ...

    def update(self, rtt: float, in_flight: int, dropped: bool, now: float) -> int: ...

    def replace(self, **changes: Any) -> LimitAlgorithm: ...


def _check_bounds(initial: int, minimum: int, maximum: int) -> None:
    check_positive_int(initial, "initial_limit")
    check_positive_int(minimum, "min_limit")
    check_positive_int(maximum, "max_limit")
    if maximum < minimum:
        raise ValueError(f"max_limit must be >= min_limit ({minimum}), got {maximum}")
    if not minimum <= initial <= maximum:
        raise ValueError(
            f"initial_limit must be in [min_limit, max_limit] = [{minimum}, {maximum}], "
            f"got {initial}"
        )


def _check_fraction(value: float, name: str, low: float, high: float) -> None:
    """Reject ``value`` outside ``[low, high)`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise TypeError(f"{name} must be a number in [{low}, {high}), got {value!r}")
    if not low <= value < high:
        raise ValueError(f"{name} must be in [{low}, {high}), got {value!r}")


class AimdLimit:
    """Additive increase, multiplicative decrease on drops (TCP Reno's rule, per call).

    ``backoff_ratio`` in [0.5, 1): the factor a drop applies. ``timeout`` (seconds; ``None``:
    off): a sample this slow counts as a drop even when the call succeeded.
    """

    __slots__ = ("_limit", "backoff_ratio", "initial_limit", "max_limit", "min_limit", "timeout")

    def __init__(
        self,
        *,
        initial_limit: int = 10,
        min_limit: int = 1,
        max_limit: int = 200,
        backoff_ratio: float = 0.9,
        timeout: float | None = None,
    ) -> None:
        _check_bounds(initial_limit, min_limit, max_limit)
        _check_fraction(backoff_ratio, "backoff_ratio", 0.5, 1.0)
        check_duration(timeout, "timeout", allow_zero=False)
        self.initial_limit = initial_limit
        self.min_limit = min_limit
        self.max_limit = max_limit
        self.backoff_ratio = float(backoff_ratio)
        self.timeout = timeout
        self._limit = initial_limit

    def __repr__(self) -> str:
        return (
            f"AimdLimit(initial_limit={self.initial_limit!r}, min_limit={self.min_limit!r}, "
            f"max_limit={self.max_limit!r}, backoff_ratio={self.backoff_ratio!r}, "
            f"timeout={self.timeout!r})"
        )

    def replace(self, **changes: Any) -> AimdLimit:
        """A new algorithm with these settings bar ``changes``, starting from its initial limit."""
        settings = {
            "initial_limit": self.initial_limit,
            "min_limit": self.min_limit,
            "max_limit": self.max_limit,
            "backoff_ratio": self.backoff_ratio,
            "timeout": self.timeout,
        }
        return AimdLimit(**{**settings, **changes})

    @property
    def limit(self) -> int:
        return self._limit

    def update(self, rtt: float, in_flight: int, dropped: bool, now: float) -> int:
        """Fold in one sample; return the new limit."""
        limit = self._limit
        timeout = self.timeout
        if dropped or (timeout is not None and rtt >= timeout):
            shrunk = min(limit - 1, math.floor(limit * self.backoff_ratio))
            self._limit = max(self.min_limit, shrunk)
        elif 2 * in_flight >= limit:
            self._limit = min(self.max_limit, limit + 1)
        return self._limit


class Gradient2Limit:
    """Move the limit by the ratio of long-term to current latency (Netflix's Gradient2).

    ``queue_size``: how many calls the limit may grow by while latency holds steady.
    ``smoothing`` in (0, 1]: the share of each step taken. ``long_window``: the number of
    samples the long-term average spans; ``warmup``: how many it averages plainly first.
    """

    __slots__ = (
        "_decay",
        "_estimate",
        "_long",
        "_samples",
        "initial_limit",
        "long_window",
        "max_limit",
        "min_limit",
        "queue_size",
        "smoothing",
        "warmup",
    )

    def __init__(
        self,
        *,
        initial_limit: int = 20,
        min_limit: int = 1,
        max_limit: int = 200,
        queue_size: int = 4,
        smoothing: float = 0.2,
        long_window: int = 600,
        warmup: int = 10,
    ) -> None:
        _check_bounds(initial_limit, min_limit, max_limit)
        check_positive_int(queue_size, "queue_size", minimum=0)
        if isinstance(smoothing, bool) or not isinstance(smoothing, (int, float)):
            raise TypeError(f"smoothing must be a number in (0, 1], got {smoothing!r}")
        if not 0.0 < smoothing <= 1.0:
            raise ValueError(f"smoothing must be in (0, 1], got {smoothing!r}")
        check_positive_int(long_window, "long_window")
        check_positive_int(warmup, "warmup")
        self.initial_limit = initial_limit
        self.min_limit = min_limit
        self.max_limit = max_limit
        self.queue_size = queue_size
        self.smoothing = float(smoothing)
        self.long_window = long_window
        self.warmup = warmup
        self._decay = 2.0 / (long_window + 1)  # an EMA spanning long_window samples
        self._estimate = float(initial_limit)
        self._long = 0.0
        self._samples = 0

    def __repr__(self) -> str:
        return (
            f"Gradient2Limit(initial_limit={self.initial_limit!r}, min_limit={self.min_limit!r}, "
            f"max_limit={self.max_limit!r}, queue_size={self.queue_size!r}, "
            f"smoothing={self.smoothing!r}, long_window={self.long_window!r}, "
            f"warmup={self.warmup!r})"
        )

    def replace(self, **changes: Any) -> Gradient2Limit:
        """A new algorithm with these settings bar ``changes``, starting from its initial limit."""
        settings = {
            "initial_limit": self.initial_limit,
            "min_limit": self.min_limit,
            "max_limit": self.max_limit,
            "queue_size": self.queue_size,
            "smoothing": self.smoothing,
            "long_window": self.long_window,
            "warmup": self.warmup,
        }
        return Gradient2Limit(**{**settings, **changes})

    @property
    def limit(self) -> int:
        return int(self._estimate)

    @property
    def long_rtt(self) -> float:
        """The long-term average latency, in seconds (0.0 before the first sample)."""
        return self._long

    def update(self, rtt: float, in_flight: int, dropped: bool, now: float) -> int:
        """Fold in one sample; return the new limit."""
        samples = self._samples
        if samples < self.warmup:
            self._samples = samples = samples + 1
            self._long = long = self._long + (rtt - self._long) / samples
        else:
            self._long = long = self._long + (rtt - self._long) * self._decay
        if rtt > 0.0 and long > 2.0 * rtt:
            self._long = long = long * 0.9  # back from an overload: forget it faster
        estimate = self._estimate
        if 2 * in_flight < estimate and not dropped:
            return int(estimate)  # the caller limits itself: no evidence about the dependency
        if dropped or rtt <= 0.0:
            gradient = 0.5 if dropped else 1.0
        else:
            gradient = max(0.5, min(1.0, long / rtt))
        target = estimate * gradient + self.queue_size
        estimate += self.smoothing * (target - estimate)
        self._estimate = estimate = max(self.min_limit, min(self.max_limit, estimate))
        return int(estimate)


class VegasLimit:
    """Keep an estimated 3-6 calls queued at the dependency (Netflix's ``VegasLimit``).

    ``probe_multiplier``: how many samples per unit of limit pass before ``rtt_noload`` is
    re-learnt (the dependency's unloaded latency may have grown); ``rng`` jitters the probes.
    """

    __slots__ = (
        "_estimate",
        "_noload",
        "_probe_at",
        "_rng",
        "_since_probe",
        "initial_limit",
        "max_limit",
        "min_limit",
        "probe_multiplier",
    )

    def __init__(
        self,
        *,
        initial_limit: int = 20,
        min_limit: int = 1,
        max_limit: int = 1000,
        probe_multiplier: int = 30,
        rng: random.Random | None = None,
    ) -> None:
        _check_bounds(initial_limit, min_limit, max_limit)
        check_positive_int(probe_multiplier, "probe_multiplier")
        if rng is not None and not isinstance(rng, random.Random):
            raise TypeError(f"rng must be a random.Random or None, got {rng!r}")
        self.initial_limit = initial_limit
        self.min_limit = min_limit
        self.max_limit = max_limit
        self.probe_multiplier = probe_multiplier
        self._rng = rng if rng is not None else random.Random()
        self._estimate = float(initial_limit)
        self._noload = 0.0
        self._since_probe = 0
        self._probe_at = self._next_probe()

    def __repr__(self) -> str:
        return (
            f"VegasLimit(initial_limit={self.initial_limit!r}, min_limit={self.min_limit!r}, "
            f"max_limit={self.max_limit!r}, probe_multiplier={self.probe_multiplier!r})"
        )

    def replace(self, **changes: Any) -> VegasLimit:
        """A new algorithm with these settings bar ``changes``, starting from its initial limit."""
        settings: dict[str, Any] = {
            "initial_limit": self.initial_limit,
            "min_limit": self.min_limit,
            "max_limit": self.max_limit,
            "probe_multiplier": self.probe_multiplier,
            "rng": self._rng,
        }
        return VegasLimit(**{**settings, **changes})

    @property
    def limit(self) -> int:
        return int(self._estimate)

    @property
    def rtt_noload(self) -> float:
        """The latency taken as unloaded, in seconds (0.0 before the first sample)."""
        return self._noload

    def _next_probe(self) -> float:
        return self._rng.uniform(0.5, 1.0) * self.probe_multiplier

    def update(self, rtt: float, in_flight: int, dropped: bool, now: float) -> int:
        """Fold in one sample; return the new limit."""
        estimate = self._estimate
        self._since_probe += 1
        if self._since_probe >= self._probe_at * estimate:
            self._since_probe = 0
            self._probe_at = self._next_probe()
            self._noload = rtt  # re-learn: the unloaded latency may have moved
            return int(estimate)
        if rtt <= 0.0:
            return int(estimate)
        if self._noload == 0.0 or rtt < self._noload:
            self._noload = rtt
            return int(estimate)
        step = max(1, int(math.log10(estimate)))
        if dropped:
            estimate -= step
        elif 2 * in_flight < estimate:
            return int(estimate)
        else:
            queue = math.ceil(estimate * (1.0 - self._noload / rtt))
            if queue <= step:
                estimate += 6 * step
            elif queue < 3 * step:
                estimate += step
            elif queue > 6 * step:
                estimate -= step
            else:
                return int(estimate)
        self._estimate = estimate = max(self.min_limit, min(self.max_limit, estimate))
        return int(estimate)


class WindowedLimit:
    """Feed ``algorithm`` one sample per window: the window's average latency (Netflix's
    ``WindowedLimit``).

    A window closes at the first sample ending ``clamp(2 * its smallest rtt, min_window,
    max_window)`` seconds after it opened; with at least ``min_samples`` samples it becomes one
    sample of ``algorithm``: the average ``rtt``, the largest ``in_flight``, dropped if any was.
    Averages are what latency-based algorithms need when single calls vary a lot: Vegas's
    smallest latency is then the smallest *average*, not one lucky call.
    """

    __slots__ = (
        "_dropped",
        "_flight",
        "_least",
        "_next_update",
        "_samples",
        "_total",
        "algorithm",
        "max_window",
        "min_samples",
        "min_window",
    )

    def __init__(
        self,
        algorithm: LimitAlgorithm,
        *,
        min_window: float = 1.0,
        max_window: float = 1.0,
        min_samples: int = 10,
    ) -> None:
        if not all(callable(getattr(algorithm, m, None)) for m in ("update", "replace")):
            raise TypeError(f"algorithm must be a limit algorithm, got {algorithm!r}")
        check_duration(min_window, "min_window", allow_zero=False)
        check_duration(max_window, "max_window", allow_zero=False)
        if max_window < min_window:
            raise ValueError(f"max_window must be >= min_window ({min_window}), got {max_window}")
        check_positive_int(min_samples, "min_samples")
        self.algorithm = algorithm
        self.min_window = min_window
        self.max_window = max_window
        self.min_samples = min_samples
        self._next_update = -math.inf
        self._reset()

    def _reset(self) -> None:
        self._samples = 0
        self._total = 0.0
        self._flight = 0
        self._least = math.inf
        self._dropped = False

    def __repr__(self) -> str:
        return (
            f"WindowedLimit({self.algorithm!r}, min_window={self.min_window!r}, "
            f"max_window={self.max_window!r}, min_samples={self.min_samples!r})"
        )

    def replace(self, **changes: Any) -> WindowedLimit:
        """A new one with these settings bar ``changes``, around a fresh copy of the algorithm."""
        settings: dict[str, Any] = {
            "min_window": self.min_window,
            "max_window": self.max_window,
            "min_samples": self.min_samples,
        }
        settings.update(changes)
        algorithm = settings.pop("algorithm", None) or self.algorithm.replace()
        return WindowedLimit(algorithm, **settings)

    @property
    def limit(self) -> int:
        return self.algorithm.limit

    def update(self, rtt: float, in_flight: int, dropped: bool, now: float) -> int:
        """Add one sample to the window; when it closes, hand its summary to the algorithm."""
        self._samples += 1
        self._total += rtt
        self._flight = max(self._flight, in_flight)
        self._least = min(self._least, rtt)
        self._dropped = self._dropped or dropped
        if now < self._next_update:
            return self.algorithm.limit
        span = min(max(2.0 * self._least, self.min_window), self.max_window)
        self._next_update = now + span
        if self._samples >= self.min_samples:
            average = self._total / self._samples
            self.algorithm.update(average, self._flight, self._dropped, now)
        self._reset()
        return self.algorithm.limit
