"""WSGI ``DeadlineMiddleware``: the caller's ``Request-Timeout-Ms`` as the request's deadline."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from resilience._clock import SYSTEM_CLOCK, Clock
from resilience._context import enter_deadline, exit_deadline, parse_deadline
from resilience._idempotency import StoredResponse
from resilience._validate import check_duration
from resilience.wsgi._shared import StartResponse, WSGIApp, answer

__all__ = ["DeadlineMiddleware"]


class DeadlineMiddleware:
    """Serve each request within the time its caller has left (``Request-Timeout-Ms``).

    Same behaviour and options as ``resilience.asgi.DeadlineMiddleware``; the deadline lives
    in the context of the thread serving the request, for as long as the app runs.
    """

    def __init__(
        self,
        app: WSGIApp,
        *,
        header: str = "Request-Timeout-Ms",
        default: float | None = None,
        maximum: float | None = None,
        clock: Clock | None = None,
    ) -> None:
        check_duration(default, "default", allow_zero=False)
        check_duration(maximum, "maximum", allow_zero=False)
        self.app = app
        self._key = "HTTP_" + header.upper().replace("-", "_")
        self.default = default
        self.maximum = maximum
        self._clock = clock or SYSTEM_CLOCK

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        seconds = parse_deadline(environ.get(self._key), self.default, self.maximum)
        if seconds is None:
            return self.app(environ, start_response)
        if seconds <= 0.0:
            return answer(start_response, StoredResponse(504, [(b"content-length", b"0")], b""))
        token, _ = enter_deadline(seconds, self._clock)
        try:
            result = self.app(environ, start_response)
            try:  # run the app to completion while the deadline is in force
                return [b"".join(result)]
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        finally:
            exit_deadline(token)
