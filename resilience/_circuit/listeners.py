"""Who hears of a breaker's transitions: its own listeners, then the event subscribers."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from resilience import _events
from resilience._circuit.state import CircuitState

__all__ = ["StateListener", "StateListeners"]

_log = logging.getLogger("resilience")

StateListener = Callable[[_events.CircuitStateChanged], object]


class StateListeners:
    """One breaker's listeners, and the announcing of its transitions.

    The listeners are a tuple swapped under the breaker's ``lock``, so concurrent adds and
    removals are never lost while ``announce`` reads it without the lock: it runs after the
    lock is released, in the thread that caused the transitions, each listener once per
    transition; one that raises is logged and skipped. Both homes of the breaker's state (this
    process, Redis) announce through it.
    """

    __slots__ = ("_listeners", "_lock", "name")

    def __init__(self, name: str, lock: threading.Lock) -> None:
        self.name = name
        self._lock = lock
        self._listeners: tuple[StateListener, ...] = ()

    def add(self, listener: StateListener) -> Callable[[], None]:
        """Call ``listener`` on each transition from now on; return its remover."""
        with self._lock:
            self._listeners = (*self._listeners, listener)

        def remove() -> None:
            with self._lock:
                self._listeners = tuple(other for other in self._listeners if other is not listener)

        return remove

    def announce(self, changes: list[tuple[CircuitState, CircuitState]]) -> None:
        """Tell the listeners, then the event subscribers, of each (old, new) in order."""
        for old, new in changes:
            event = _events.CircuitStateChanged(self.name, old.value, new.value)
            for listener in self._listeners:
                try:
                    listener(event)
                except Exception:
                    _log.exception("circuit breaker %r listener %r failed", self.name, listener)
            if _events.listeners:
                _events.emit(event)
