"""ASGI ``DeadlineMiddleware``: the caller's ``Request-Timeout-Ms`` as the request's deadline."""

from __future__ import annotations

from resilience._clock import SYSTEM_CLOCK, Clock
from resilience._context import enter_deadline, exit_deadline, parse_deadline
from resilience._deadline_http import deadline_exceeded, failed_late, ran_out
from resilience._idempotency.rules import header_value
from resilience._validate import check_duration
from resilience.asgi._shared import ASGIApp, Message, Receive, Scope, Send, answer

__all__ = ["DeadlineMiddleware"]


class DeadlineMiddleware:
    """Serve each request within the time its caller has left.

    Reads ``Request-Timeout-Ms`` (what ``ResilientTransport`` sends; ``header``), capped at
    ``maximum`` seconds, and publishes it as the deadline of the request's context, so
    ``resilience.remaining()``, ``Retry`` and outgoing ``ResilientTransport`` calls see the
    budget and pass the rest on. A request that arrives with no time left gets 504 without
    running; one whose app fails because the time ran out (``DeadlineExceededError``, or any
    exception or 5xx response once no time is left) gets 504 too, if its response has not
    started. Both are problem documents. A missing or malformed header means no deadline (or
    ``default`` seconds).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        header: str = "Request-Timeout-Ms",
        default: float | None = None,
        maximum: float | None = None,
        clock: Clock | None = None,
    ) -> None:
        check_duration(default, "default", allow_zero=False)
        check_duration(maximum, "maximum", allow_zero=False)
        self.app = app
        self._header = header.lower().encode("latin-1")
        self.default = default
        self.maximum = maximum
        self._clock = clock or SYSTEM_CLOCK

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        seconds = parse_deadline(
            header_value(scope["headers"], self._header), self.default, self.maximum
        )
        if seconds is None:
            await self.app(scope, receive, send)
            return
        if seconds <= 0.0:
            await answer(send, deadline_exceeded(scope["method"], scope["path"]))
            return
        started = replaced = False

        async def watch(message: Message) -> None:
            nonlocal started, replaced
            if replaced:
                return  # the rest of the app's 5xx: the client has its 504
            if message["type"] == "http.response.start":
                started = True
                if failed_late(message["status"]):
                    replaced = True
                    await answer(send, deadline_exceeded(scope["method"], scope["path"]))
                    return
            await send(message)

        token, _ = enter_deadline(seconds, self._clock)
        try:
            await self.app(scope, receive, watch)
        except Exception as exc:
            if replaced and ran_out(exc):
                return  # rendered as a 500 and raised again (Starlette does): answered 504
            if started or not ran_out(exc):
                raise
            await answer(send, deadline_exceeded(scope["method"], scope["path"]))
        finally:
            exit_deadline(token)
