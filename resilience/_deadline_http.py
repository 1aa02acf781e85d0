"""What ``DeadlineMiddleware`` says on the wire when the caller's time runs out (asgi, wsgi).

Sans-IO, shared by both shells: the 504 problem document, and the test of whether an
exception from the app is the deadline running out.
"""

from __future__ import annotations

import logging
from typing import Final

from resilience import _events
from resilience._context import remaining
from resilience._errors import DeadlineExceededError
from resilience._idempotency.rules import StoredResponse, problem

__all__ = ["deadline_exceeded", "failed_late", "ran_out"]

_log: Final = logging.getLogger("resilience")


def deadline_exceeded(method: str, path: str) -> StoredResponse:
    """504 as a problem document, like every other refusal of the middleware (never stored:
    the idempotency middleware releases the claim of a 5xx); logged on ``resilience.server``."""
    detail = "the time the caller gave this request (Request-Timeout-Ms) ran out"
    _events.log_decision("deadline_exceeded", "deadline", 504, method, path, detail)
    return problem(504, "Deadline exceeded", detail)


def ran_out(exc: BaseException) -> bool:
    """Whether ``exc`` is the deadline running out; call it while the deadline is in force.

    Our own ``DeadlineExceededError``, or any failure once no time is left (a timeout capped
    by the deadline, a call refused for lack of time). Logged, since the exception itself
    becomes a 504 and is not raised to the server.
    """
    if isinstance(exc, DeadlineExceededError) or remaining() == 0.0:
        _log.info(
            "resilience: the caller's deadline ran out in the app (%s); answered 504",
            type(exc).__name__,
        )
        return True
    return False


def failed_late(status: int) -> bool:
    """Whether a response the app starts with ``status`` is a failure for lack of time: a 5xx
    once no time is left (frameworks render the timeout's exception as a 500 themselves)."""
    if status >= 500 and remaining() == 0.0:
        _log.info("resilience: the caller's deadline ran out in the app (%d); answered 504", status)
        return True
    return False
