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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limiter = self.limiter
        # The slot is taken here, before the app runs, as the WSGI twin does: the refusal
        # answered 503 is this limiter's by construction. One raised by a limiter inside the
        # app (whatever its name: the default names are all "adaptive_concurrency") is the
        # app's error and propagates.
        try:
            permit = limiter._try_acquire() or await limiter._wait_async()
        except ConcurrencyLimitedError as error:
            await answer(send, refused(error, scope["method"], scope["path"]))
            return
        started = limiter._clock.now()
        status = 0

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as exc:
            limiter._failed(permit, started, exc)
            raise
        except BaseException:  # a disconnect, a cancellation: no sample, the slot freed
            limiter._release()
            raise
        limiter._finished(permit, started, status)
