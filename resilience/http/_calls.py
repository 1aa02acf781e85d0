"""The per-call steps of both transports, and the judgements they hand to the policies.

A request flows: ``begin_call`` (the policy key's guarded send, built once in ``_origins``;
the call's deadline published; what the request carries saved; an Idempotency-Key for
POST/PATCH) -> Retry -> [Hedge: idempotent requests, body bytes or none] -> [AdaptiveThrottle]
-> [AdaptiveConcurrency] -> CircuitBreaker -> Bulkhead -> the transport's attempt
(``prepare_attempt``: httpx timeouts capped by min(attempt timeout, time left); that, or the
request's own read timeout when shorter, sent as ``Request-Timeout-Ms``; the inner transport;
``answered`` or ``failed``; a 409 "in progress" waited on with ``poll_wait``) -> ``raised`` (a
spent deadline becomes the one ``HTTPDeadlineExceededError``) -> ``end_call`` (the deadline
withdrawn; the request put back as the caller built it). The deadline bounds the call through
those timeouts and the retry decisions, in both transports alike; no timer cancels an attempt
(that would cost a timer per request, and the sync transport could not do it anyway).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from contextvars import Token
from typing import TYPE_CHECKING, Any

import httpx

from resilience import _events
from resilience._circuit.breaker import CircuitBreaker
from resilience._clock import SYSTEM_CLOCK
from resilience._context import DeadlineScope, current_deadline, enter_deadline
from resilience._errors import DeadlineExceededError, add_note
from resilience._policy import Policy
from resilience._retry.backoff import Backoff
from resilience.http._classify import (
    IDEMPOTENT_METHODS,
    IN_PROGRESS_STATUS,
    KEYED_METHODS,
    NEVER_SENT_ERRORS,
    Classifier,
    request_of,
)
from resilience.http._errors import HTTPDeadlineExceededError, deadline_spent
from resilience.http._options import TransportOptions
from resilience.http._origins import Origins, Send, Verdicts, breaker_open_for
from resilience.http._retry_after import parse_retry_after
from resilience.http._wire import (
    Saved,
    add_idempotency_key,
    cap_timeouts,
    hedgeable,
    replayable,
    restore,
    save,
    set_header,
)

if TYPE_CHECKING:
    pass

__all__ = ["MAX_IN_PROGRESS_POLLS", "RETRY_AFTER_JITTER", "CallState", "Calls"]

# How long past its deadline a call may be when its last attempt's capped timeout fires (the
# OS rounds socket timeouts): within this, the timeout is the deadline's.
_DEADLINE_SLACK = 0.01
# A retry that waits for the origin's breaker to turn half-open arrives this long after it
# does (a wait of exactly the open time lands on the boundary, where float rounding decides).
_PAST_OPEN = 0.001
# Set on a request (for the call; ``end_call`` takes it off) once its retry has waited for
# the origin's open breaker: a call waits for it at most once.
_WAITED = "_resilience_breaker_waited"
# At most this many waits for one attempt answered 409 "still in progress" (the deadline
# bounds them first, as a rule).
MAX_IN_PROGRESS_POLLS = 20
# A Retry-After wait is lengthened by up to this share of itself, at random, so the clients a
# server told "1" do not all come back in the same millisecond.
RETRY_AFTER_JITTER = 0.1

CallState = tuple[Send, "Token[DeadlineScope | None] | None", Saved]


class Calls:
    """The per-call steps and the judgements the policies ask for, shared by both transports."""

    def __init__(self, options: TransportOptions, wrap: Callable[[Policy | None], Send]) -> None:
        self.options = options
        retry = options.retry
        self.clock = options.clock or (retry.clock if retry is not None else SYSTEM_CLOCK)
        self.rules = Classifier(
            retry_statuses=options.retry_statuses,
            breaker_statuses=options.breaker_statuses,
            retry_errors=options.retry_errors,
            honour_all=options.origins_honour_keys is True,
            honouring=options.honouring_origins(),
        )
        self.attempt_timeout = options.attempt_timeout
        self.deadline = options.deadline
        self.hedging = options.hedge is not None
        self._keyed_methods = KEYED_METHODS if options.idempotency_keys else frozenset()
        self._deadline_key = (options.deadline_header or "").encode("ascii")
        # Retry's own predicates, when given: ``on`` narrows which errors the HTTP rules retry,
        # ``on_result`` adds responses (both still only for requests that may be resent).
        core = retry._core if retry is not None else None
        self._user_on = core.retries_on if core is not None else None
        self._user_on_result = core.on_result if core is not None else None
        self._backoff = retry.backoff if retry is not None else Backoff()
        self._rng: random.Random = self._backoff._rng
        self._foreign_errors = not all(
            issubclass(kind, httpx.RequestError) for kind in options.retry_errors
        )
        self.origins = Origins(
            options,
            self.clock,
            Verdicts(
                retry_error=self.retry_error,
                retry_response=self.retry_response,
                breaker_error=self.rules.breaker_failure,
                breaker_response=self.breaker_response,
                wait_hint=self.wait_hint,
                discard=_close_quietly,
            ),
            wrap,
        )
        self.observer = (
            _events.observer(options.tracer_provider, options.meter_provider)
            if options.tracing
            else None
        )
        self.dead_letter = options.dead_letter

    # -- per call ------------------------------------------------------------------------------
    # One request runs: begin_call, then per attempt prepare_attempt and answered (or failed),
    # then end_call. They run on every request, so each does its steps inline.

    def begin_call(self, request: httpx.Request) -> CallState:
        """Pick the request's send function (its policy key's; hedged when hedging is on, for
        idempotent requests whose every copy can send the whole body), publish the call's
        deadline (an enclosing one that ends sooner stays in force), save what the request
        carries, then key it."""
        method = request.method
        origins = self.origins
        if origins.key_of is None:
            url = request.url
            key: Any = (url.raw_scheme, url.raw_host, url.port)
        else:
            key = origins.key_of(request)  # the caller's request, as it came
        origin = origins._built.get(key) or origins.get(key)
        send = origin.plain
        if self.hedging and method in IDEMPOTENT_METHODS and hedgeable(request):
            send = origin.hedged
        token = None
        if self.deadline is not None:
            token, scope = enter_deadline(self.deadline, self.clock)
            if token is None and scope.remaining() <= 0.0:  # ours, just made, has time left
                raise self._exceeded(request)
        else:
            enclosing = current_deadline()
            if enclosing is not None and enclosing.remaining() <= 0.0:
                raise self._exceeded(request)  # before any policy admits the call
        saved = save(request)
        if method in self._keyed_methods:
            options = self.options
            add_idempotency_key(request, options.key_style, options.derive_keys)
        return send, token, saved

    def end_call(self, request: httpx.Request, state: CallState) -> None:
        """Withdraw this call's deadline, and put the request back as the caller built it:
        httpx sends the same object again (auth flows) or copies its headers (redirects)."""
        token = state[1]
        if token is not None:
            token.var.reset(token)
        restore(request, state[2])
        request.__dict__.pop(_WAITED, None)

    def timed_out(
        self, exc: httpx.TimeoutException, request: httpx.Request
    ) -> HTTPDeadlineExceededError | None:
        """The error for a call whose deadline (ours or an enclosing one) is spent, when that
        is why ``exc`` was raised; else ``None``."""
        if isinstance(exc, DeadlineExceededError):
            return None  # already the one error
        scope = current_deadline()
        if scope is None or scope.at - scope.clock.now() > _DEADLINE_SLACK:
            return None
        return self._exceeded(request)

    def raised(self, exc: Exception, request: httpx.Request) -> Exception:
        """The error the caller gets for a call that raised ``exc``: the one
        ``DeadlineExceededError`` when the deadline is why, else ``exc``; parked first when a
        dead-letter queue is set (the note goes on the error the caller gets)."""
        error: Exception = exc
        if isinstance(exc, httpx.TimeoutException):
            error = self.timed_out(exc, request) or exc
        if self.dead_letter is not None:
            honours = self.rules.honours_keys(request)
            self.dead_letter.park_error(request, error, honours_keys=honours)
        return error

    async def raised_async(self, exc: Exception, request: httpx.Request) -> Exception:
        """``raised`` for the async transport (the store step runs in a worker thread)."""
        error: Exception = exc
        if isinstance(exc, httpx.TimeoutException):
            error = self.timed_out(exc, request) or exc
        if self.dead_letter is not None:
            honours = self.rules.honours_keys(request)
            await self.dead_letter.park_error_async(request, error, honours_keys=honours)
        return error

    def _exceeded(self, request: httpx.Request) -> HTTPDeadlineExceededError:
        return deadline_spent(self.deadline or 0.0, request)

    def prepare_attempt(self, request: httpx.Request, inner: object) -> object:
        """Cap this attempt's httpx timeouts at min(attempt timeout, time left) and tell the
        server the attempt's bound (that, or the request's own read timeout when shorter);
        start the attempt's span (the token goes to ``answered`` or ``failed``)."""
        limit = self.attempt_timeout
        scope = current_deadline()
        if scope is not None:
            left = scope.at - scope.clock.now()  # scope.remaining(), without the call
            if left <= 0.0:
                raise self._exceeded(request)
            if limit is None or left < limit:
                limit = left
        if limit is not None:
            limit = cap_timeouts(request, limit)  # the request's own read timeout, if shorter
            if self._deadline_key:
                value = b"%d" % max(1, int(limit * 1000))
                set_header(request.headers, self._deadline_key, value)
        observer = self.observer
        if observer is None or _instrumented(inner):
            return None
        return observer.start_attempt(request)

    def failed(self, token: object, request: httpx.Request, exc: BaseException) -> None:
        """An attempt raised: end its span; give the error its request for classifying."""
        if isinstance(exc, httpx.RequestError):
            exc.request = request  # httpx attaches it above the transport; we classify here
        elif self._foreign_errors and isinstance(exc, Exception):
            try:
                exc._resilience_request = request  # type: ignore[attr-defined]
            except AttributeError:  # __slots__: it will not be retried
                pass
        if token is not None:
            self.observer.end_attempt(token, None, exc)  # type: ignore[union-attr]

    def answered(self, token: object, response: httpx.Response, request: httpx.Request) -> bool:
        """An attempt got a response: end its span; may the call retry (or hedge) past it?
        Judged once per attempt; the verdict rides on the response for the policies."""
        if token is not None:
            self.observer.end_attempt(token, response, None)  # type: ignore[union-attr]
        status = response.status_code
        on_result = self._user_on_result
        if on_result is None and status not in self.rules.judged:
            return False  # the common case: no header lookups at all
        rules = self.rules
        response.request = request  # httpx sets it above the transport; waits read it
        verdict = rules.retry_status(status, request)
        if not verdict and on_result is not None:
            verdict = rules.may_resend(request) and bool(on_result(response))
        verdict = verdict and replayable(request)
        response._resilience_retryable = verdict  # type: ignore[attr-defined]
        return verdict

    # -- judgements (predicates handed to the policies) ----------------------------------------

    def retry_error(self, exc: BaseException) -> bool:
        """Whether an attempt's error calls for another attempt (HTTP rules, then Retry's
        own ``on``, then whether the body can be sent again)."""
        request = request_of(exc) or getattr(exc, "_resilience_request", None)
        if request is None or not self.rules.retry_error(exc, request):
            return False
        if self._user_on is not None and not self._user_on(exc):
            return False
        if not (isinstance(exc, NEVER_SENT_ERRORS) or replayable(request)):
            add_note(
                exc,
                "resilience: not retried: the request body is a one-shot stream that was "
                "already sent",
            )
            return False  # (a never-sent body was not consumed)
        refusal = self.breaker_refuses_wait(request)
        if refusal is not None:
            add_note(exc, f"resilience: not retried: {refusal}")
            return False
        return True

    def retry_response(self, response: object) -> bool:
        """Whether a response is worth another attempt: ``answered`` judged it so, and the
        origin's breaker does not stand in the way."""
        if getattr(response, "_resilience_retryable", False) is not True:
            return False
        return self.breaker_refuses_wait(response.request) is None  # type: ignore[attr-defined]

    def breaker_refuses_wait(self, request: httpx.Request) -> str | None:
        """Why a retry of ``request`` must not wait for its origin's open breaker, or ``None``
        (the breaker admits calls, or the wait is allowed). A call waits for it at most once,
        and only when the time left exceeds the wait plus one attempt timeout (the trial it
        waits for can run to its end); else the call ends with the answer it has."""
        origin = self.origins.built_for(request)
        open_for = breaker_open_for(origin.breaker if origin is not None else None)
        if open_for <= 0.0:
            return None
        if _WAITED in request.__dict__:
            return (
                f"the origin's circuit breaker is open again ({open_for:.3g} s) and this call "
                "already waited for it once"
            )
        scope = current_deadline()
        if scope is not None:
            left = scope.at - scope.clock.now()
            needed = open_for + _PAST_OPEN + (self.attempt_timeout or 0.0)
            if needed >= left:
                return (
                    f"the origin's circuit breaker is open for {open_for:.3g} s; that wait and "
                    f"one attempt do not fit in the {max(left, 0.0):.3g} s left"
                )
        return None

    def breaker_response(self, response: object) -> bool:
        return response.status_code in self.rules.breaker_statuses  # type: ignore[attr-defined]

    def wait_hint(self, breaker: CircuitBreaker | None) -> Callable[[object], float | None]:
        """The least wait before the next attempt, for one origin: the server's Retry-After
        (with a little jitter on top), or — when longer — the time the origin's breaker stays
        open, plus ``_PAST_OPEN`` so the retry arrives when it admits its trial. Asked only
        for a retry the predicates allowed (``breaker_refuses_wait``); a wait while the
        breaker is open is the call's one such wait."""

        def hint(outcome: object) -> float | None:
            wait = self.asked_wait(outcome)
            open_for = breaker_open_for(breaker)
            if open_for > 0.0:
                request = request_of(outcome) or getattr(outcome, "_resilience_request", None)
                if request is not None:
                    request.__dict__[_WAITED] = True
                open_for += _PAST_OPEN
                if wait is None or open_for > wait:
                    return open_for
            return wait

        return hint

    def asked_wait(self, outcome: object) -> float | None:
        """The wait a response asks for: ``Retry-After`` plus up to 10 % more at random, then
        capped at ``retry_after_max`` (never less than asked, unless that is past the cap), or
        ``None``."""
        if not isinstance(outcome, httpx.Response):
            return None
        headers = outcome.headers
        maximum = self.options.retry_after_max
        asked = parse_retry_after(
            headers.get("Retry-After"), date=headers.get("Date"), maximum=maximum
        )
        if asked is None:
            return None
        wait = asked + asked * RETRY_AFTER_JITTER * self._rng.random()
        return wait if wait < maximum else maximum

    def poll_wait(
        self, response: httpx.Response, request: httpx.Request, polls: int
    ) -> float | None:
        """How long to wait before asking again, when a keyed request's key-honouring origin
        answered 409 "still in progress": the server's ``Retry-After``, else the backoff's
        ceiling for the next poll, jittered down by at most half. ``None`` — give the 409 to
        the retry — without a deadline to bound the polls, when the wait would pass it, or
        after ``MAX_IN_PROGRESS_POLLS``. The polls are one attempt: they spend no attempt and
        no budget, and their wait grows."""
        if response.status_code != IN_PROGRESS_STATUS or polls >= MAX_IN_PROGRESS_POLLS:
            return None
        scope = current_deadline()
        if scope is None or not self.rules.honours_keys(request):
            return None
        wait = self.asked_wait(response)
        if wait is None:
            top = self._backoff.ceiling(polls + 1)
            wait = top - top / 2 * self._rng.random()
        return wait if wait < scope.at - scope.clock.now() else None


def _close_quietly(response: object) -> None:
    if isinstance(response, httpx.Response):
        response.close()


def _instrumented(inner: object) -> bool:
    """Whether opentelemetry-instrumentation-httpx already wraps ``inner``'s send method (it
    then makes one CLIENT span per attempt itself; a second would duplicate it)."""
    send = getattr(inner, "handle_request", None) or getattr(inner, "handle_async_request", None)
    return hasattr(send, "__wrapped__")
