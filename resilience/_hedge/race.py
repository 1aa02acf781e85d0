"""The rules of one hedged call, sans-IO: when each copy starts, which answer wins, what is
discarded.

- Copy 1 starts at once; copy k+1 is due ``delay`` seconds after copy k started, or at once when
  a copy fails (no point waiting for a copy that already lost), up to ``attempts`` copies.
- The first copy to return an accepted value wins. A failed copy (an exception, or a value
  ``accepts`` refuses) does not win. When every copy has failed, the latest refused value is the
  answer if there is one, else the first exception is raised.
- Every value that is not the answer is handed to ``discard`` once (the HTTP transports close
  losing responses): a refused value when a later one replaces it or another copy wins, or when
  the caller gives up; a value arriving after the race was decided, at once.

The shells feed a ``Race`` what happens, in the order it happens, on one thread at a time: the
outcome of a copy, ``(True, value)`` or ``(False, exception)``, and a timer's tick, the number of
the copy whose ``delay`` ran out (so a tick that comes late, after another copy started, is
ignored without comparing times). They start a copy, and arm a timer for the seconds
``launch()`` returns, whenever it tells them to; they cancel or abandon what is still running
once ``decided``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["Item", "Race"]

Item = int | tuple[bool, Any]  # a tick (copy number) or an outcome (ok, value or error)
_NONE: Any = object()


class Race:
    """One hedged call's state: copies started and running, the answer kept so far.

    ``delay`` is this race's own, so a policy may choose it per call (a latency tracker's
    percentile); ``attempts`` counts copies, the first included. Not thread-safe: the shell
    serialises what it feeds in.
    """

    __slots__ = (
        "_accepts",
        "_attempts",
        "_delay",
        "_discard",
        "_error",
        "_kept",
        "_winner",
        "decided",
        "launched",
        "running",
    )

    def __init__(
        self,
        delay: float,
        attempts: int,
        accepts: Callable[[Any], bool],
        discard: Callable[[Any], None],
    ) -> None:
        self._delay = delay
        self._attempts = attempts
        self._accepts = accepts
        self._discard = discard
        self._kept: Any = _NONE  # the latest refused value
        self._winner: Any = _NONE
        self._error: BaseException | None = None  # the first exception
        self.launched = 0  # copies started
        self.running = 0  # copies started whose outcome has not come in
        self.decided = False

    def launch(self) -> float | None:
        """Record that the next copy starts now; return the seconds until the one after it is
        due, or ``None`` when this is the last."""
        self.launched += 1
        self.running += 1
        return self._delay if self.launched < self._attempts else None

    def step(self, item: Item) -> bool:
        """Take a tick or an outcome; return whether to launch the next copy now."""
        if isinstance(item, int):  # a timer: only the latest copy's counts
            return not self.decided and item == self.launched and item < self._attempts
        self.running -= 1
        if self.decided:
            self.late(item)
            return False
        ok, value = item
        if ok and self._accepts(value):
            self._winner = value
            self._drop_kept()
            self.decided = True
            return False
        if ok:
            self._drop_kept()
            self._kept = value
        elif self._error is None:
            self._error = value
        if self.launched < self._attempts:
            return True  # a failed copy: start the next at once
        self.decided = self.running == 0
        return False

    def result(self) -> Any:
        """The answer of a decided race: the winner, else the latest refused value; else raise
        the first exception."""
        if self._winner is not _NONE:
            return self._winner
        if self._kept is not _NONE:
            return self._kept
        assert self._error is not None, "a decided race without a winner has an error"
        raise self._error

    def late(self, item: Item) -> None:
        """An outcome after the race was decided: a value is discarded; ticks and errors are
        dropped."""
        if not isinstance(item, int) and item[0]:
            self._discard(item[1])

    def abandon(self) -> None:
        """The caller stops waiting (an error or a cancellation of its own): nothing will be
        returned, so the kept value is discarded; later outcomes are late."""
        if not self.decided:
            self.decided = True
            self._drop_kept()

    def _drop_kept(self) -> None:
        if self._kept is not _NONE:
            kept, self._kept = self._kept, _NONE
            self._discard(kept)
