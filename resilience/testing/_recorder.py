"""EventRecorder: collect the events policies emit, for assertions in tests."""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType
from typing import TypeVar

from resilience._events import Event, subscribe

__all__ = ["EventRecorder"]

E = TypeVar("E", bound=Event)


class EventRecorder:
    """Record every event emitted while in the ``with`` block.

    >>> from resilience import RetryScheduled
    >>> with EventRecorder() as recorder:
    ...     pass
    >>> recorder.of(RetryScheduled)
    []
    """

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._lock = threading.Lock()
        self._unsubscribe: Callable[[], None] | None = None

    def __enter__(self) -> EventRecorder:
        self._unsubscribe = subscribe(self._record)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def _record(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)

    def of(self, kind: type[E]) -> list[E]:
        """The recorded events of type ``kind``, in order."""
        with self._lock:
            return [event for event in self.events if isinstance(event, kind)]
