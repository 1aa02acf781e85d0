"""ResilientTransport and AsyncResilientTransport: policies per origin, with HTTP rules.

A request flows: Idempotency-Key added (POST/PATCH, once per call) -> the deadline published
(a context variable: the time left, for every attempt and retry decision) -> the origin's
pipeline (Retry -> [Hedge, idempotent requests only] -> CircuitBreaker -> Bulkhead) -> one
attempt: httpx timeouts capped by the time left, the time left sent downstream in
``Request-Timeout-Ms``, the inner transport called. The deadline bounds the call through those
timeouts and the retry decisions, in both transports alike; no timer cancels an attempt (that
would cost a timer per request, and the sync transport could not do it anyway). Outcomes are
classified by ``resilience.http._classify``; a response that will not be returned (a retryable
status, a hedge loser) is read and closed so its connection goes back to the pool. When the
call ends the time-left header leaves the request again (a value the caller set is put back).

Both transports share ``_Rules`` (classification, per-origin registry, per-attempt steps); they
differ only in calling the inner transport, reading bodies and sleeping — sync or async.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextvars import Token
from dataclasses import dataclass
from typing import Any

import httpx

from resilience import _events
from resilience._bulkhead import Bulkhead
from resilience._circuit.breaker import CircuitBreaker
from resilience._clock import SYSTEM_CLOCK, Clock
from resilience._context import (
    DeadlineScope,
    current_deadline,
    current_key_scope,
    enter_deadline,
)
from resilience._errors import DeadlineExceededError, add_note
from resilience._hedge import Hedge
from resilience._pipeline import Pipeline
from resilience._policy import Policy
from resilience._retry.budget import RetryBudget
from resilience._retry.retry import Retry
from resilience._timeout import exceeded
from resilience._validate import check_duration
from resilience.http._classify import (
    BREAKER_FAILURE_STATUS,
    KEYED_METHODS,
    KEYED_RETRY_STATUSES,
    has_key,
    is_breaker_failure,
    may_resend,
    request_of,
    retryable_error,
    retryable_status,
)
from resilience.http._keys import IDEMPOTENCY_KEY, KeyStyle, new_idempotency_key, styled
from resilience.http._retry_after import DEFAULT_RETRY_AFTER_MAX, parse_retry_after

__all__ = ["DEADLINE_HEADER", "AsyncResilientTransport", "ResilientTransport"]

# The time left for the whole call, in integer milliseconds at the moment the attempt is sent,
# so the service receiving it can bound its own work and pass the remainder on.
DEADLINE_HEADER = "Request-Timeout-Ms"

_TIMEOUT_KEYS = ("connect", "read", "write", "pool")
_IDEMPOTENCY_KEY = IDEMPOTENCY_KEY.encode("ascii")
_DEFAULT_RETRY = Retry(attempts=3)


@dataclass(frozen=True, slots=True)
class _Origin:
    """The policies of one (scheme, host, port), and the guarded send functions built once."""

    plain: Callable[[httpx.Request], Any]
    hedged: Callable[[httpx.Request], Any]
    breaker: CircuitBreaker | None
    bulkhead: Bulkhead | None
    budget: RetryBudget | None


def _replayable(request: httpx.Request) -> bool:
    """Whether the body can be sent again: bytes, or multipart (httpx re-reads its files)."""
    return isinstance(request.stream, (httpx.ByteStream, httpx._multipart.MultipartStream))


class _Rules:
    """Configuration, classification and the per-origin registry, shared by both transports."""

    def __init__(
        self,
        *,
        retry: Retry | None,
        breaker: CircuitBreaker | None,
        bulkhead: Bulkhead | None,
        timeout: float | None,
        deadline: float | None,
        hedge: Hedge | None,
        idempotency_keys: bool,
        key_style: KeyStyle,
        derive_keys: bool,
        retry_after_max: float,
        deadline_header: str | None,
        clock: Clock | None,
        tracing: bool,
        tracer_provider: object,
        meter_provider: object,
    ) -> None:
        if retry is not None and not isinstance(retry, Retry):
            raise TypeError(f"retry must be a Retry or None, got {retry!r}")
        if breaker is not None and not isinstance(breaker, CircuitBreaker):
            raise TypeError(f"breaker must be a CircuitBreaker or None, got {breaker!r}")
        if bulkhead is not None and not isinstance(bulkhead, Bulkhead):
            raise TypeError(f"bulkhead must be a Bulkhead or None, got {bulkhead!r}")
        if hedge is not None and not isinstance(hedge, Hedge):
            raise TypeError(f"hedge must be a Hedge or None, got {hedge!r}")
        check_duration(timeout, "timeout", allow_zero=False)
        check_duration(deadline, "deadline", allow_zero=False)
        check_duration(retry_after_max, "retry_after_max")
        if key_style not in ("sf-string", "token"):
            raise ValueError(f"key_style must be 'sf-string' or 'token', got {key_style!r}")
        self.retry = retry
        self.breaker = breaker
        self.bulkhead = bulkhead
        self.timeout = timeout
        self.deadline = deadline
        self.hedge = hedge
        self.idempotency_keys = idempotency_keys
        self._keyed_methods = KEYED_METHODS if idempotency_keys else frozenset()
        self.key_style: KeyStyle = key_style
        if not isinstance(derive_keys, bool):
            raise TypeError(f"derive_keys must be True or False, got {derive_keys!r}")
        self.derive_keys = derive_keys
        self.retry_after_max = float(retry_after_max)
        self.deadline_header = deadline_header
        self._deadline_key = (deadline_header or "").encode("ascii")
        # Where a header someone else set (the caller, an outer transport) waits in
        # request.extensions while this transport sends its own; one slot per transport.
        self._set_aside = f"resilience.time_left_set_aside.{id(self)}"
        self.clock = clock or (retry.clock if retry is not None else SYSTEM_CLOCK)
        self._origins: dict[tuple[bytes, bytes, int | None], _Origin] = {}
        self._lock = threading.Lock()
        if not isinstance(tracing, bool):
            raise TypeError(f"tracing must be True or False, got {tracing!r}")
        self.observer = _events.observer(tracer_provider, meter_provider) if tracing else None

    # -- per call ------------------------------------------------------------------------------
    # One request runs: begin_call, then per attempt prepare_attempt and answered (or failed),
    # then end_call. They run on every request, so each does its steps inline.

    def begin_call(
        self, request: httpx.Request, wrap: Callable[[Policy | None], Any]
    ) -> tuple[Callable[[httpx.Request], Any], Token[DeadlineScope | None] | None]:
        """Key the request, pick its origin's send function (hedged for idempotent requests
        when hedging is on) and publish the call's deadline (an enclosing one that ends sooner
        stays in force). Return the send function and the token for ``end_call``."""
        method = request.method
        if method in self._keyed_methods:
            self.add_idempotency_key(request)
        url = request.url
        origin = self._origins.get((url.raw_scheme, url.raw_host, url.port))
        if origin is None:
            origin = self.origin(request, wrap)
        send = (
            origin.hedged if self.hedge is not None and may_resend(method, False) else origin.plain
        )
        if self.deadline is None:
            return send, None
        token, scope = enter_deadline(self.deadline, self.clock)
        if token is None and scope.remaining() <= 0.0:  # ours, just made, has time left
            raise self._exceeded()
        return send, token

    def add_idempotency_key(self, request: httpx.Request) -> None:
        """Give an unsafe request (``begin_call`` checked the method) its key, once per call;
        never replace the caller's. Inside a request served under an Idempotency-Key
        (``resilience.asgi`` / ``wsgi``), derive it from that key, so a re-run of the handler
        sends the same keys downstream."""
        if not has_key(request):
            serving = current_key_scope() if self.derive_keys else None
            if serving is None:
                key = new_idempotency_key(self.key_style)
            else:
                key = styled(serving.derive(request.method, str(request.url)), self.key_style)
            _set_header(request.headers, _IDEMPOTENCY_KEY, key)

    def origin(self, request: httpx.Request, wrap: Callable[[Policy | None], Any]) -> _Origin:
        """The policies of ``request``'s origin, built on its first request."""
        key = _origin_key(request.url)
        found = self._origins.get(key)
        if found is None:
            with self._lock:
                found = self._origins.get(key)
                if found is None:
                    found = self._origins[key] = self._build(key, wrap)
        return found

    def _build(
        self, key: tuple[bytes, bytes, int | None], wrap: Callable[[Policy | None], Any]
    ) -> _Origin:
        scheme, host, port = key
        label = f"{scheme.decode()}://{host.decode()}" + (f":{port}" if port else "")
        outer: list[Policy] = []
        inner: list[Policy] = []
        budget = None
        if self.retry is not None:
            template = self.retry
            if template.budget is not None:
                budget = template.budget.replace(name=f"{template.budget.name}[{label}]")
            outer.append(
                Retry(
                    attempts=template.attempts,
                    on=self._retryable_error,
                    on_result=self._retryable_response,
                    backoff=template.backoff,
                    budget=budget,
                    clock=self.clock,
                    delay_hint=self._retry_after,
                    name=f"{template.name}[{label}]",
                )
            )
        breaker = None
        if self.breaker is not None:
            breaker = self.breaker.replace(
                name=f"{self.breaker.name}[{label}]",
                on=is_breaker_failure,
                on_result=_is_server_error,
            )
            inner.append(breaker)
        bulkhead = None
        if self.bulkhead is not None:
            bulkhead = self.bulkhead.replace(name=f"{self.bulkhead.name}[{label}]")
            inner.append(bulkhead)
        plain = wrap(Pipeline(*outer, *inner, tracing=False)) if outer or inner else wrap(None)
        hedged = plain
        if self.hedge is not None:
            hedge = Hedge(
                self.hedge.delay,
                self.hedge.max_hedges,
                on_result=self._retryable_response,
                discard=_close_quietly,
                clock=self.clock,
                name=f"{self.hedge.name}[{label}]",
            )
            hedged = wrap(Pipeline(*outer, hedge, *inner, tracing=False))
        return _Origin(plain, hedged, breaker, bulkhead, budget)

    def end_call(self, request: httpx.Request, token: Token[DeadlineScope | None] | None) -> None:
        """Withdraw this call's deadline, and the time-left header from ``request``: the value
        was true for one attempt only, and httpx copies every header of ``response.request``
        once more after the call (its cookie jar reads them), so a stale one costs as much as
        sending it did. A value the caller set themselves is put back."""
        if token is not None:
            token.var.reset(token)  # exit_deadline(token), without the extra call
        elif current_deadline() is None:
            return  # no deadline was in force: no attempt sent the header
        if self.deadline_header:
            raw = getattr(request.headers, "_list", None)
            if (
                raw
                and raw[-1][0] is self._deadline_key
                and self._set_aside not in request.extensions
            ):
                del raw[-1]  # the common case: ours, appended last, nothing to put back
            else:
                _withdraw_time_left(request, self._deadline_key, self._set_aside)

    def _exceeded(self) -> DeadlineExceededError:
        return exceeded("deadline", "Deadline", self.deadline or 0.0)

    def prepare_attempt(self, request: httpx.Request, inner: object) -> object:
        """Cap this attempt's httpx timeouts by the time left and tell the server about it;
        start the attempt's span (the returned token goes to ``answered`` or ``failed``)."""
        limit = self.timeout
        scope = current_deadline()
        if scope is not None:
            left = scope.at - scope.clock.now()  # scope.remaining(), without the call
            if left <= 0.0:
                raise self._exceeded()
            if limit is None or left < limit:
                limit = left
            if self.deadline_header:
                # The time left, for this attempt; an earlier attempt's value is replaced, and
                # one set by the caller (or an outer transport: ours carry our key object) is
                # kept aside for end_call to put back.
                key = self._deadline_key
                value = b"%d" % max(1, int(left * 1000))
                replaced = _set_header(request.headers, key, value)
                if replaced is not None and replaced[0] is not key:
                    request.extensions[self._set_aside] = replaced
        if limit is not None:
            extensions = request.extensions
            current = extensions.get("timeout")
            if not current:
                extensions["timeout"] = dict.fromkeys(_TIMEOUT_KEYS, limit)
            else:
                capped = {}
                for name in _TIMEOUT_KEYS:
                    value = current.get(name)
                    capped[name] = limit if value is None or value > limit else value
                extensions["timeout"] = capped
        observer = self.observer
        if observer is None or _instrumented(inner):
            return None
        return observer.start_attempt(request)

    def failed(self, token: object, request: httpx.Request, exc: BaseException) -> None:
        """An attempt raised: end its span; give httpx errors their request for classifying."""
        if isinstance(exc, httpx.RequestError):
            exc.request = request  # httpx attaches it above the transport; we classify here
        if token is not None:
            self.observer.end_attempt(token, None, exc)  # type: ignore[union-attr]

    def answered(self, token: object, response: httpx.Response, request: httpx.Request) -> bool:
        """An attempt got a response: end its span; may the call retry (or hedge) past it?
        Judged once per attempt; the verdict rides on the response for the policies."""
        if token is not None:
            self.observer.end_attempt(token, response, None)  # type: ignore[union-attr]
        status = response.status_code
        if status not in KEYED_RETRY_STATUSES:
            return False  # the common case: no header lookups at all
        verdict = retryable_status(status, request.method, has_key(request)) and _replayable(
            request
        )
        response._resilience_retryable = verdict  # type: ignore[attr-defined]
        return verdict

    # -- classification (predicates handed to the policies) ------------------------------------

    def _retryable_error(self, exc: BaseException) -> bool:
        request = request_of(exc)
        if request is None:
            return False
        resendable = may_resend(request.method, has_key(request))
        if resendable and not _replayable(request):
            if retryable_error(exc, False):
                return True  # never sent: the one-shot body was not consumed
            if retryable_error(exc, True):
                add_note(
                    exc,
                    "resilience: not retried: the request body is a one-shot stream "
                    "that was already sent",
                )
            return False
        return retryable_error(exc, resendable)

    def _retryable_response(self, response: object) -> bool:
        """Whether this response calls for another attempt (judged once per attempt, in
        ``answered``; the verdict rides on the response)."""
        return getattr(response, "_resilience_retryable", False) is True

    def _retry_after(self, outcome: object) -> float | None:
        if not isinstance(outcome, httpx.Response):
            return None
        headers = outcome.headers
        return parse_retry_after(
            headers.get("Retry-After"), date=headers.get("Date"), maximum=self.retry_after_max
        )


def _instrumented(inner: object) -> bool:
    """Whether opentelemetry-instrumentation-httpx already wraps ``inner``'s send method (it
    then makes one CLIENT span per attempt itself; a second would duplicate it)."""
    send = getattr(inner, "handle_request", None) or getattr(inner, "handle_async_request", None)
    return hasattr(send, "__wrapped__")


def _set_header(
    headers: httpx.Headers, key: bytes, value: str | bytes
) -> tuple[bytes, bytes, bytes] | None:
    """Set one ASCII header, replacing any earlier value; return the entry replaced, if any.

    ``Headers.__setitem__`` costs ~2.5 µs (it re-encodes and rescans); this is called on every
    attempt, so write httpx's internal list directly when it has the shape we know, and fall
    back to the public API otherwise (which returns nothing).
    """
    raw = getattr(headers, "_list", None)
    encoded = value if isinstance(value, bytes) else value.encode("ascii")
    if not isinstance(raw, list):
        headers[key.decode("ascii")] = encoded.decode("ascii")
        return None
    lower = key.lower()
    entry = (key, lower, encoded)
    for index, item in enumerate(raw):
        if item[1] == lower:
            raw[index] = entry
            return item  # type: ignore[no-any-return]
    raw.append(entry)
    return None


def _withdraw_time_left(request: httpx.Request, key: bytes, set_aside: str) -> None:
    """Take the time-left header ``_Rules.prepare_attempt`` wrote out of ``request`` again, and
    put back the one it replaced (kept in ``request.extensions[set_aside]``)."""
    raw = getattr(request.headers, "_list", None)
    if not isinstance(raw, list):
        return  # written through the public API, which cannot tell ours from the caller's
    for index in range(len(raw) - 1, -1, -1):  # ours is usually the last
        if raw[index][0] is key:
            break
    else:
        return
    replaced = request.extensions.pop(set_aside, None)
    if replaced is None:
        del raw[index]
    else:
        raw[index] = replaced


def _is_server_error(response: httpx.Response) -> bool:
    return response.status_code >= BREAKER_FAILURE_STATUS  # a 5xx counts; 4xx do not


def _close_quietly(response: object) -> None:
    if isinstance(response, httpx.Response):
        response.close()


class _Resilient:
    """What both transports share: the constructor, the rules, and per-origin lookups."""

    _rules: _Rules

    def _configure(
        self,
        *,
        retry: Retry | None,
        breaker: CircuitBreaker | None,
        bulkhead: Bulkhead | None,
        timeout: float | None,
        deadline: float | None,
        hedge: Hedge | None,
        idempotency_keys: bool,
        key_style: KeyStyle,
        derive_keys: bool,
        retry_after_max: float,
        deadline_header: str | None,
        clock: Clock | None,
        tracing: bool,
        tracer_provider: object,
        meter_provider: object,
    ) -> None:
        self._rules = _Rules(
            retry=retry,
            breaker=breaker,
            bulkhead=bulkhead,
            timeout=timeout,
            deadline=deadline,
            hedge=hedge,
            idempotency_keys=idempotency_keys,
            key_style=key_style,
            derive_keys=derive_keys,
            retry_after_max=retry_after_max,
            deadline_header=deadline_header,
            clock=clock,
            tracing=tracing,
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
        )

    def breaker_for(self, url: httpx.URL | str) -> CircuitBreaker | None:
        """The circuit breaker of ``url``'s origin (``None`` before its first request)."""
        found = _origin_of(self._rules, url)
        return found.breaker if found is not None else None

    def bulkhead_for(self, url: httpx.URL | str) -> Bulkhead | None:
        """The bulkhead of ``url``'s origin (``None`` before its first request)."""
        found = _origin_of(self._rules, url)
        return found.bulkhead if found is not None else None


class ResilientTransport(_Resilient, httpx.BaseTransport):
    """An ``httpx.BaseTransport`` applying resilience policies per origin, with HTTP semantics.

    - ``retry``: attempts, backoff and budget come from this ``Retry`` (default 3 attempts);
      which outcomes are retried follows the HTTP rules: idempotent methods or keyed requests
      (or failures that prove the request never left), statuses 408/429/500/502/503/504 (and 409
      for keyed requests). When attempts run out the last response is returned, as httpx
      would have. ``Retry-After`` (seconds or any HTTP-date, capped at ``retry_after_max``)
      replaces the backoff when longer; if it reaches past the deadline the response is
      returned at once. ``None`` disables retries.
    - ``breaker``, ``bulkhead``: templates, copied per origin (scheme, host, port). Transport
      errors, timeouts and 5xx count as breaker failures; 4xx do not. An open breaker raises
      ``CircuitOpenError`` without touching the network.
    - ``timeout``: seconds per attempt; ``deadline``: seconds for the whole call, retries and
      waits included. Each attempt's httpx timeouts are min(timeout, time left); the time left
      is sent as ``Request-Timeout-Ms`` (``deadline_header``; ``None`` to not send it).
    - ``hedge``: a ``Hedge`` template applied to idempotent requests only.
    - ``idempotency_keys``: POST and PATCH get an ``Idempotency-Key`` (a UUID4, as an RFC 8941
      sf-string, or a bare token with ``key_style="token"``), the same on every attempt. While
      serving a request that came with a key (behind ``IdempotencyMiddleware``), the key is
      derived from it instead (``derive_keys``), so a handler re-run after a crash repeats its
      downstream keys and the downstream replays instead of acting twice.
    """

    def __init__(
        self,
        inner: httpx.BaseTransport | None = None,
        *,
        retry: Retry | None = _DEFAULT_RETRY,
        breaker: CircuitBreaker | None = None,
        bulkhead: Bulkhead | None = None,
        timeout: float | None = None,
        deadline: float | None = None,
        hedge: Hedge | None = None,
        idempotency_keys: bool = True,
        key_style: KeyStyle = "sf-string",
        derive_keys: bool = True,
        retry_after_max: float = DEFAULT_RETRY_AFTER_MAX,
        deadline_header: str | None = DEADLINE_HEADER,
        clock: Clock | None = None,
        tracing: bool = True,
        tracer_provider: object = None,
        meter_provider: object = None,
    ) -> None:
        self._inner = inner if inner is not None else httpx.HTTPTransport()
        # Every keyword argument above, passed on as is (the signature stays explicit for users).
        self._configure(**{k: v for k, v in locals().items() if k not in ("self", "inner")})

    def _wrap(self, policy: Policy | None) -> Callable[[httpx.Request], httpx.Response]:
        return self._attempt if policy is None else policy._wrap_sync(self._attempt)

    def _attempt(self, request: httpx.Request) -> httpx.Response:
        rules = self._rules
        inner = self._inner
        token = rules.prepare_attempt(request, inner)
        try:
            response = inner.handle_request(request)
        except BaseException as exc:
            rules.failed(token, request, exc)
            raise
        if rules.answered(token, response, request):
            try:
                response.read()
            finally:
                response.close()
        return response

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        rules = self._rules
        send, token = rules.begin_call(request, self._wrap)
        try:
            return send(request)  # type: ignore[no-any-return]
        finally:
            rules.end_call(request, token)

    def close(self) -> None:
        self._inner.close()


class AsyncResilientTransport(_Resilient, httpx.AsyncBaseTransport):
    """The ``httpx.AsyncClient`` twin of ``ResilientTransport``: same arguments, same rules.

    Cancelling the calling task stops every attempt (a backoff sleep, a hedge) and releases
    every permit.
    """

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport | None = None,
        *,
        retry: Retry | None = _DEFAULT_RETRY,
        breaker: CircuitBreaker | None = None,
        bulkhead: Bulkhead | None = None,
        timeout: float | None = None,
        deadline: float | None = None,
        hedge: Hedge | None = None,
        idempotency_keys: bool = True,
        key_style: KeyStyle = "sf-string",
        derive_keys: bool = True,
        retry_after_max: float = DEFAULT_RETRY_AFTER_MAX,
        deadline_header: str | None = DEADLINE_HEADER,
        clock: Clock | None = None,
        tracing: bool = True,
        tracer_provider: object = None,
        meter_provider: object = None,
    ) -> None:
        self._inner = inner if inner is not None else httpx.AsyncHTTPTransport()
        self._configure(**{k: v for k, v in locals().items() if k not in ("self", "inner")})

    def _wrap(self, policy: Policy | None) -> Callable[[httpx.Request], Any]:
        return self._attempt if policy is None else policy._wrap_async(self._attempt)

    async def _attempt(self, request: httpx.Request) -> httpx.Response:
        rules = self._rules
        inner = self._inner
        token = rules.prepare_attempt(request, inner)
        try:
            response = await inner.handle_async_request(request)
        except BaseException as exc:
            rules.failed(token, request, exc)
            raise
        if rules.answered(token, response, request):
            try:
                await response.aread()
            finally:
                await response.aclose()
        return response

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        rules = self._rules
        send, token = rules.begin_call(request, self._wrap)
        try:
            return await send(request)  # type: ignore[no-any-return]
        finally:
            rules.end_call(request, token)

    async def aclose(self) -> None:
        await self._inner.aclose()


def _origin_key(url: httpx.URL) -> tuple[bytes, bytes, int | None]:
    """(scheme, host, port): what per-origin policies are keyed by."""
    return (url.raw_scheme, url.raw_host, url.port)


def _origin_of(rules: _Rules, url: httpx.URL | str) -> _Origin | None:
    return rules._origins.get(_origin_key(httpx.URL(url)))
