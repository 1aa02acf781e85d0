"""ResilientTransport and AsyncResilientTransport: the two thin shells over ``Calls``.

They differ only in calling the inner transport, reading bodies and sleeping — sync or async;
every step and judgement is ``resilience.http._calls.Calls``'s, shared by both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx

from resilience._bulkhead import Bulkhead
from resilience._circuit.breaker import CircuitBreaker
from resilience._policy import Policy
from resilience.http._calls import Calls
from resilience.http._options import DEADLINE_HEADER, TransportOptions, transport_options
from resilience.http._origins import Send

if TYPE_CHECKING:
    from typing_extensions import Self, Unpack

    from resilience.http._options import TransportKwargs

__all__ = ["DEADLINE_HEADER", "AsyncResilientTransport", "ResilientTransport"]


class _Resilient:
    """What both transports share: construction checks and per-origin lookups."""

    _calls: Calls
    _inner: Any
    _send: str  # the inner transport's send method
    _twin: str  # the transport of the other colour

    def _setup(self, inner: Any, options: TransportOptions) -> None:
        method = self._send
        if not callable(getattr(inner, method, None)):
            raise TypeError(
                f"inner must be a transport with {method}() for {type(self).__name__}, got "
                f"{type(inner).__name__}"
                + (f": use {self._twin} for it" if hasattr(inner, _OTHER[method]) else "")
            )
        self._inner = inner
        self._calls = Calls(options, self._wrap)

    @classmethod
    def with_options(cls, inner: Any, options: TransportOptions) -> Self:
        """A transport around ``inner`` with ``options`` already built."""
        transport = cls.__new__(cls)
        transport._setup(inner, options)
        return transport

    def _wrap(self, policy: Policy | None) -> Send:
        raise NotImplementedError

    @property
    def options(self) -> TransportOptions:
        """The options this transport was built with (frozen)."""
        return self._calls.options

    def breaker_for(self, url: httpx.URL | str) -> CircuitBreaker | None:
        """The circuit breaker ``url``'s requests go through (``None`` before the first)."""
        found = self._calls.origins.find(url)
        return found.breaker if found is not None else None

    def bulkhead_for(self, url: httpx.URL | str) -> Bulkhead | None:
        """The bulkhead ``url``'s requests go through (``None`` before the first)."""
        found = self._calls.origins.find(url)
        return found.bulkhead if found is not None else None


_OTHER = {"handle_request": "handle_async_request", "handle_async_request": "handle_request"}


class ResilientTransport(_Resilient, httpx.BaseTransport):
    """An ``httpx.BaseTransport`` applying resilience policies per origin, with HTTP semantics.

    Without options it runs the **standard pipeline**: a 30 s deadline per call, a 10 s
    timeout per attempt, 3 attempts with jittered backoff honouring ``Retry-After``, a retry
    budget (20 % of first attempts + 10/s) and a circuit breaker (50 % failures over 30 s,
    20 calls at least; open 5 s) per origin. Each option (``TransportOptions`` documents them
    all) replaces one part; ``None`` switches it off.

    - What is retried follows the HTTP rules: idempotent methods after any retryable failure;
      POST and PATCH only after a failure proving the server did not act (connection refused,
      429) — unless ``origins_honour_keys`` declares that their origin honours the
      ``Idempotency-Key`` they carry. When attempts run out, the last response is returned,
      as httpx would have. ``Retry-After`` waits at least as asked (plus up to 10 %).
    - ``retry``: attempts, backoff and budget come from this ``Retry``; its ``on`` narrows the
      errors the HTTP rules retry; its ``on_result`` adds responses to retry (it sees status
      and headers; the body is not read yet).
    - ``breaker``, ``bulkhead``, ``hedge``, ``limiter``, ``throttle``: templates, copied per
      policy key (the origin unless ``policy_key`` says otherwise), on the transport's
      ``clock``. ``limiter`` (``AdaptiveConcurrency``) and ``throttle`` (``AdaptiveThrottle``)
      are off by default; see ``TransportOptions``.
    - ``attempt_timeout`` and ``deadline``: each attempt's httpx timeouts are min(attempt
      timeout, time left), and that is sent as ``Request-Timeout-Ms`` (``deadline_header``;
      ``None`` to not send it). A spent deadline raises ``DeadlineExceededError``.

    ``inner`` (default ``httpx.HTTPTransport()``) must be a sync transport; entering and
    closing this transport enters and closes it.
    """

    _send, _twin = "handle_request", "AsyncResilientTransport"

    def __init__(
        self, inner: httpx.BaseTransport | None = None, **options: Unpack[TransportKwargs]
    ) -> None:
        inner = inner if inner is not None else httpx.HTTPTransport()
        self._setup(inner, transport_options(dict(options)))

    def _wrap(self, policy: Policy | None) -> Callable[[httpx.Request], httpx.Response]:
        return self._attempt if policy is None else policy._wrap_sync(self._attempt)

    def _attempt(self, request: httpx.Request) -> httpx.Response:
        calls = self._calls
        inner = self._inner
        polls = 0
        while True:
            token = calls.prepare_attempt(request, inner)
            try:
                response = inner.handle_request(request)
            except BaseException as exc:
                calls.failed(token, request, exc)
                raise
            if not calls.answered(token, response, request):
                return response  # type: ignore[no-any-return]
            try:
                response.read()
            finally:
                response.close()
            wait = calls.poll_wait(response, request, polls)
            if wait is None:
                return response  # type: ignore[no-any-return]
            polls += 1
            calls.clock.sleep(wait)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        calls = self._calls
        state = calls.begin_call(request)
        try:
            response: httpx.Response = state[0](request)
            dead_letter = calls.dead_letter
            if dead_letter is not None:  # before end_call: the request still has its key
                dead_letter.park_response(
                    request, response, honours_keys=calls.rules.honours_keys(request)
                )
            return response
        except Exception as exc:
            error = calls.raised(exc, request)
            if error is exc:
                raise
            raise error from exc
        finally:
            calls.end_call(request, state)

    def __enter__(self) -> Self:
        enter = getattr(self._inner, "__enter__", None)
        if enter is not None:
            enter()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        leave = getattr(self._inner, "__exit__", None)
        if leave is not None:
            leave(*exc_info)
        else:
            self._inner.close()

    def close(self) -> None:
        self._inner.close()


class AsyncResilientTransport(_Resilient, httpx.AsyncBaseTransport):
    """The ``httpx.AsyncClient`` twin of ``ResilientTransport``: same options, same rules.

    Cancelling the calling task stops every attempt (a backoff sleep, a hedge) and releases
    every permit. ``inner`` (default ``httpx.AsyncHTTPTransport()``) must be an async transport.
    """

    _send, _twin = "handle_async_request", "ResilientTransport"

    def __init__(
        self, inner: httpx.AsyncBaseTransport | None = None, **options: Unpack[TransportKwargs]
    ) -> None:
        inner = inner if inner is not None else httpx.AsyncHTTPTransport()
        self._setup(inner, transport_options(dict(options)))

    def _wrap(self, policy: Policy | None) -> Callable[[httpx.Request], Any]:
        return self._attempt if policy is None else policy._wrap_async(self._attempt)

    async def _attempt(self, request: httpx.Request) -> httpx.Response:
        calls = self._calls
        inner = self._inner
        polls = 0
        while True:
            token = calls.prepare_attempt(request, inner)
            try:
                response = await inner.handle_async_request(request)
            except BaseException as exc:
                calls.failed(token, request, exc)
                raise
            if not calls.answered(token, response, request):
                return response  # type: ignore[no-any-return]
            try:
                await response.aread()
            finally:
                await response.aclose()
            wait = calls.poll_wait(response, request, polls)
            if wait is None:
                return response  # type: ignore[no-any-return]
            polls += 1
            await calls.clock.sleep_async(wait)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        calls = self._calls
        state = calls.begin_call(request)
        try:
            response: httpx.Response = await state[0](request)
            dead_letter = calls.dead_letter
            if dead_letter is not None:  # before end_call: the request still has its key
                await dead_letter.park_response_async(
                    request, response, honours_keys=calls.rules.honours_keys(request)
                )
            return response
        except Exception as exc:
            error = await calls.raised_async(exc, request)
            if error is exc:
                raise
            raise error from exc
        finally:
            calls.end_call(request, state)

    async def __aenter__(self) -> Self:
        enter = getattr(self._inner, "__aenter__", None)
        if enter is not None:
            await enter()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        leave = getattr(self._inner, "__aexit__", None)
        if leave is not None:
            await leave(*exc_info)
        else:
            await self._inner.aclose()

    async def aclose(self) -> None:
        await self._inner.aclose()
