"""WSGI ``ConcurrencyLimitMiddleware``: serve as many requests at once as the app absorbs
without queueing; answer the rest 503 at once."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from resilience._concurrency import AdaptiveConcurrency
from resilience._concurrency_http import check_limiter, refused
from resilience._errors import ConcurrencyLimitedError
from resilience.wsgi._shared import StartResponse, WSGIApp, answer, close, whole

__all__ = ["ConcurrencyLimitMiddleware"]


class ConcurrencyLimitMiddleware:
    """The twin of ``resilience.asgi.ConcurrencyLimitMiddleware``: the same answers, for WSGI.

    A whole response (a list or tuple, or a framework response that is not streaming) frees its
    slot when the app returns it; a stream holds the slot until the server closes it (PEP 3333
    says it always does), so its sample covers the streaming too.
    """

    def __init__(self, app: WSGIApp, limiter: AdaptiveConcurrency) -> None:
        self.app = app
        self.limiter = check_limiter(limiter)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        limiter = self.limiter
        try:
            permit = limiter._enter_sync()
        except ConcurrencyLimitedError as error:
            path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
            return answer(start_response, refused(error, environ.get("REQUEST_METHOD", ""), path))
        started = limiter._clock.now()
        status = 0

        def starting(line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            nonlocal status
            status = int(line[:3]) if line[:3].isdigit() else 0
            return start_response(line, headers, exc_info)

        try:
            result = self.app(environ, starting)
        except Exception as exc:
            limiter._failed(permit, started, exc)
            raise
        except BaseException:
            limiter._release()
            raise
        if whole(result):
            limiter._finished(permit, started, status)
            return result
        return _Held(result, lambda: limiter._finished(permit, started, status))


class _Held:
    """A streamed response holding its slot until the server closes it (once)."""

    def __init__(self, result: Iterable[bytes], done: Callable[[], None]) -> None:
        self._result = result
        self._done: Callable[[], None] | None = done

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._result)

    def close(self) -> None:
        done, self._done = self._done, None
        try:
            close(self._result)
        finally:
            if done is not None:
                done()
