"""The one error a spent deadline raises from the transports: both ours and httpx's kind.

A call whose deadline runs out (the transport's ``deadline=`` or an enclosing ``Deadline``)
fails with ``HTTPDeadlineExceededError``: a ``DeadlineExceededError`` (so a ``TimeoutError``)
for code that thinks in deadlines, and an ``httpx.TimeoutException`` (so an ``httpx.HTTPError``)
for code written against bare httpx, which keeps catching what it caught before. httpx's own
timeout, when one fired, is its ``__cause__``.
"""

from __future__ import annotations

from typing import Any

import httpx

from resilience import _events
from resilience._errors import DeadlineExceededError

__all__ = ["HTTPDeadlineExceededError", "deadline_spent"]


class HTTPDeadlineExceededError(DeadlineExceededError, httpx.TimeoutException):
    """The call's deadline of ``timeout`` seconds ran out (``request``: the request it was for)."""

    def __init__(self, name: str, timeout: float, request: httpx.Request | None = None) -> None:
        DeadlineExceededError.__init__(self, name, timeout)
        self._request = request

    def __reduce__(self) -> Any:
        return (type(self), (self.name, self.timeout), self.__dict__)


def deadline_spent(seconds: float, request: httpx.Request) -> HTTPDeadlineExceededError:
    """The error for a call whose deadline ran out, announced as an event."""
    if _events.listeners:
        _events.emit(_events.DeadlineExceeded("deadline", seconds))
    return HTTPDeadlineExceededError("Deadline", seconds, request)
