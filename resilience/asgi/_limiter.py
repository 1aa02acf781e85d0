"""ASGI ``ConcurrencyLimitMiddleware``: serve as many requests at once as the app absorbs
without queueing; answer the rest 503 at once."""

from __future__ import annotations

from resilience._concurrency import AdaptiveConcurrency
from resilience._concurrency_http import check_limiter, refused
from resilience._errors import ConcurrencyLimitedError
from resilience.asgi._shared import ASGIApp, Message, Receive, Scope, Send, answer

__all__ = ["ConcurrencyLimitMiddleware"]


class ConcurrencyLimitMiddleware:
    """Run the app under ``limiter`` (an ``AdaptiveConcurrency``), one slot per HTTP request.

    A request over the limit (and its queue, if ``limiter`` has one) is answered 503 with
    ``Retry-After`` and a ``temporary-reduced-capacity`` problem document, without reaching the
    app, and logged on ``resilience.server`` at INFO. A request's sample is the time until the
    app returned; ``limiter``'s ``on_result`` sees the response's status (``lambda status:
    status == 503`` makes the app's own 503s drops); an app that raises an ``on`` exception
    (default ``TimeoutError``) dropped the request. The slot is released on every path, a
    disconnect or a cancellation included. Lifespan and websocket scopes pass through.
    """

    def __init__(self, app: ASGIApp, limiter: AdaptiveConcurrency) -> None:
        self.app = app
        self.limiter = check_limiter(limiter)
        self._guarded = limiter._wrap_async(self._serve)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> int:
        status = 0

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, sending)
        return status

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            await self._guarded(scope, receive, send)
        except ConcurrencyLimitedError as error:
            if error.name != self.limiter.name:
                raise  # a limit inside the app refused: not ours to answer
            await answer(send, refused(error, scope["method"], scope["path"]))
