"""Counters over a sliding time window, kept as a ring of slices (O(1) per update).

Used by the retry budget and the circuit breaker's time window. Time is cut into slices of
``window / slices`` seconds; an entry counted at time ``t`` is forgotten once its slice has fully
left the window, that is once ``now - window`` reaches the slice's end: after more than
``window`` and at most ``window + window / slices`` seconds. The window ``[now - window, now]``
then touches ``slices + 1`` slices (the oldest one partly), so the ring holds ``slices + 1``.
"""

from __future__ import annotations

import math

__all__ = ["SlidingCounters"]


class SlidingCounters:
    """``fields`` running totals over the last ``window`` seconds; not thread-safe by itself.

    Call ``advance(now)`` first; it drops expired slices and returns the ring index of the
    current slice, so callers add to ``slices[field][index]`` and ``totals[field]`` directly.
    """

    __slots__ = ("_index", "_newest", "_next_edge", "_ring", "_width", "slices", "totals", "window")

    def __init__(self, window: float, fields: int, slices: int = 10) -> None:
        self.window = window
        self._width = window / slices
        # One slice more than ``slices``: the current slice is partly filled, and the oldest
        # one must stay until all of it is older than ``window`` (a ring of ``slices`` would
        # forget an entry up to one slice before it is ``window`` old).
        self._ring = ring = slices + 1
        self.slices = [[0] * ring for _ in range(fields)]
        self.totals = [0] * fields
        self._newest: int | None = None  # absolute number of the newest slice seen
        self._index = 0  # its ring index
        self._next_edge = -math.inf  # when the next slice starts: until then, no work

    def advance(self, now: float) -> int:
        """Move the window to ``now``; return the index of the slice that ``now`` falls in."""
        if now < self._next_edge:
            return self._index  # still in the newest slice (or a clock that stepped back)
        current = math.floor(now / self._width)
        newest = self._newest
        if newest is None or current > newest:
            ring = self._ring
            if newest is None or current - newest >= ring:
                self.reset()
            else:
                totals = self.totals
                for absolute in range(newest + 1, current + 1):
                    index = absolute % ring
                    for field, column in enumerate(self.slices):
                        totals[field] -= column[index]
                        column[index] = 0
            self._newest = newest = current
            self._index = current % ring
            self._next_edge = (current + 1) * self._width
        return self._index

    def add(self, now: float, field: int, amount: int = 1) -> None:
        """Add ``amount`` to ``field`` at time ``now``."""
        index = self.advance(now)
        self.slices[field][index] += amount
        self.totals[field] += amount

    def take_back(self, at: float, field: int, amount: int = 1) -> None:
        """Undo an ``add`` of ``amount`` to ``field`` made at time ``at``: taken from the slice
        it went into, or nowhere once that slice has left the window (it no longer counts)."""
        newest = self._newest
        absolute = math.floor(at / self._width)
        if newest is None or absolute > newest or newest - absolute >= self._ring:
            return
        column = self.slices[field]
        index = absolute % self._ring
        amount = min(amount, column[index])  # never below zero, whatever the caller passes
        column[index] -= amount
        self.totals[field] -= amount

    def reset(self) -> None:
        """Forget everything (the next ``advance`` starts a fresh window)."""
        self._newest = None
        self._next_edge = -math.inf
        for column in self.slices:
            column[:] = [0] * len(column)
        self.totals[:] = [0] * len(self.totals)
