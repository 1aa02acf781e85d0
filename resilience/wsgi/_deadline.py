"""WSGI ``DeadlineMiddleware``: the caller's ``Request-Timeout-Ms`` as the request's deadline."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import Any

from resilience._clock import SYSTEM_CLOCK, Clock
from resilience._context import DeadlineScope, enter_deadline, exit_deadline, parse_deadline
from resilience._deadline_http import deadline_exceeded, failed_late, ran_out
from resilience._idempotency.rules import StoredResponse
from resilience._validate import check_duration
from resilience.wsgi._shared import (
    StartResponse,
    WSGIApp,
    answer,
    close,
    native_headers,
    status_line,
    whole,
)

__all__ = ["DeadlineMiddleware"]


class DeadlineMiddleware:
    """Serve each request within the time its caller has left (``Request-Timeout-Ms``).

    Same behaviour and options as ``resilience.asgi.DeadlineMiddleware``. The deadline is in
    force in the serving thread's context while the app is called and during each ``next()``
    of the iterable it returns (and its ``close()``), so a streamed response stays streamed.
    If the time runs out before the first chunk leaves (an exception, or a 5xx the framework
    rendered), the client gets a 504 problem instead.
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
        watch = _Watch(start_response, environ)
        if seconds <= 0.0:
            return answer(start_response, watch.response())
        token, scope = enter_deadline(seconds, self._clock)
        try:
            result = self.app(environ, watch.start)
        except Exception as exc:
            if not ran_out(exc):
                raise
            return answer(start_response, watch.response(), sys.exc_info())
        finally:
            exit_deadline(token)
        if watch.replaced:  # the app started a 5xx once no time was left: our 504 instead
            close(result)
            return [watch.response().body]
        if whole(result):
            return result  # made already: no app code runs while it is sent
        return _Deadlined(result, scope, watch)


class _Watch:
    """``start_response`` for the app: a 5xx started once no time is left becomes our 504."""

    __slots__ = ("_504", "environ", "replaced", "start_response")

    def __init__(self, start_response: StartResponse, environ: dict[str, Any]) -> None:
        self.start_response, self.environ = start_response, environ
        self.replaced = False
        self._504: StoredResponse | None = None

    def response(self) -> StoredResponse:
        """Our 504 (made, and logged, once)."""
        if self._504 is None:
            environ = self.environ
            path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
            self._504 = deadline_exceeded(environ.get("REQUEST_METHOD", ""), path)
        return self._504

    def start(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        if status[:3].isdigit() and failed_late(int(status[:3])):
            self.replaced = True
            return self.replace(exc_info)
        return self.start_response(status, headers, exc_info)

    def replace(self, exc_info: Any) -> Any:
        response = self.response()
        headers = native_headers(response.headers)
        return self.start_response(status_line(response.status), headers, exc_info)


class _Deadlined:
    """The app's iterable, each step under the request's deadline; a deadline that runs out
    before the first chunk becomes a 504 problem (the headers have not left yet)."""

    __slots__ = ("_first", "_iterator", "_result", "_scope", "_watch")

    def __init__(self, result: Iterable[bytes], scope: DeadlineScope, watch: _Watch) -> None:
        self._result, self._scope, self._watch = result, scope, watch
        self._iterator: Iterator[bytes] | None = None
        self._first = True

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        watch = self._watch
        token, _ = enter_deadline(self._scope.remaining(), self._scope.clock)
        try:
            if watch.replaced:
                return self._replacement()
            if self._iterator is None:
                self._iterator = iter(self._result)
            chunk = next(self._iterator)
            if watch.replaced:  # started lazily, in this step
                return self._replacement()
        except StopIteration:
            raise
        except Exception as exc:
            if not (self._first and ran_out(exc)):
                raise
            watch.replaced = True
            watch.replace(sys.exc_info())
            return self._replacement()
        finally:
            exit_deadline(token)
        self._first = False
        return chunk

    def _replacement(self) -> bytes:
        """Our 504's body, once; the app's own body is never sent."""
        if not self._first:
            raise StopIteration
        self._first = False
        return self._watch.response().body

    def close(self) -> None:
        token, _ = enter_deadline(self._scope.remaining(), self._scope.clock)
        try:
            close(self._result)
        finally:
            exit_deadline(token)
