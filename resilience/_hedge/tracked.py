"""A race whose delay comes from a latency percentile and whose extra copies need a budget.

``Hedge(delay="p95")`` runs one ``TrackedRace`` per call: the delay is the tracker's value when
the call starts (no hedging while it warms up), every copy after the first must be granted by
the hedge budget (``RetryBudget.try_spend``; refused, the race goes on with the copies it has),
and when the race is decided each copy is one latency sample: the winner's time from its
start, and a losing copy's time so far (a lower bound — it was at least that slow). Counting
calls instead (a hedged call takes the delay plus a fast answer) would let the percentile
ratchet upward whenever the slow share drifts above ``1 - q``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from resilience._hedge.race import Item, Race
from resilience._retry.budget import RetryBudget

__all__ = ["TrackedRace"]


class TrackedRace(Race):
    """A ``Race`` that asks ``budget`` before each extra copy and, once won, calls
    ``record(latency, now)`` for each copy."""

    __slots__ = ("_budget", "_now", "_record", "_starts")

    def __init__(
        self,
        delay: float,
        attempts: int,
        accepts: Callable[[Any], bool],
        discard: Callable[[Any], None],
        *,
        record: Callable[[float, float], None] | None,
        budget: RetryBudget | None,
        now: Callable[[], float],
    ) -> None:
        super().__init__(delay, attempts, accepts, discard)
        self._record = record
        self._budget = budget
        self._now = now
        self._starts: list[float] = []

    def may_launch(self) -> bool:
        """Whether the next copy may start: the first always (it counts toward the budget),
        a later one when the budget grants it. Refused, no more copies start: the race ends
        with those already running."""
        budget = self._budget
        if not self.launched:
            if budget is not None:
                budget.record_attempt()
        elif budget is not None and not budget.try_spend():
            self._attempts = self.launched  # the race now ends with the copies it has
            self.decided = self.running == 0
            return False
        self._starts.append(self._now())
        return True

    def step(self, item: Item) -> bool:
        was_decided = self.decided
        launch = super().step(item)
        if self.decided and not was_decided and isinstance(item, tuple) and item[0]:
            record = self._record
            if record is not None:
                now = self._now()
                for started in self._starts:
                    record(now - started, now)
        return launch
