"""HTTP retry semantics as named data, and failures sorted by what they prove.

Sources: RFC 9110 §9.2 (safe and idempotent methods), urllib3's ``Retry`` (connect errors are
"raised before the request is sent"; read errors "may have side-effects"), gRPC's transparent
retries, and draft-ietf-httpapi-idempotency-key-header (a keyed request may be resent to a
server that honours the key).

The rule (``Classifier``): a request may be sent again after a failure that leaves open whether
the server acted on it only when repeating it is harmless — an idempotent method, or a keyed
request to an origin declared to honour ``Idempotency-Key``. Any request may be sent again
after a failure that proves the server did not act: the connection was refused or the request
never written (``NEVER_SENT_ERRORS``), or the server said so (``UNPROCESSED_STATUSES``: 429).
"""

from __future__ import annotations

from collections.abc import Collection

import httpx

from resilience._errors import DeadlineExceededError
from resilience.http._keys import IDEMPOTENCY_KEY

__all__ = [
    "BREAKER_FAILURE_STATUSES",
    "IDEMPOTENT_METHODS",
    "IN_PROGRESS_STATUS",
    "KEYED_METHODS",
    "KEYED_RETRY_STATUSES",
    "NEVER_SENT_ERRORS",
    "OVERLOAD_STATUSES",
    "RETRY_ERRORS",
    "RETRY_STATUSES",
    "UNPROCESSED_STATUSES",
    "Classifier",
    "OriginKey",
    "has_key",
    "refused_for_load",
    "origin_key",
    "request_of",
]

# RFC 9110 §9.2.2: the safe methods plus PUT and DELETE; repeating them has the effect of one.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})

# Unsafe and not idempotent: these get an Idempotency-Key, so a server that honours it can tell
# a resend from a new request.
KEYED_METHODS = frozenset({"POST", "PATCH"})

# Statuses worth another try: timeout, throttled, and the transient server errors.
# Never 400, 401, 403, 404, 422 (the request itself is wrong) nor 501 (it will stay unimplemented).
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

# 409 Conflict on a keyed request to a key-honouring server means "the original is still in
# flight" (idempotency draft §2.7): no correction is needed, only patience. Elsewhere it is a
# real conflict.
IN_PROGRESS_STATUS = 409
KEYED_RETRY_STATUSES = RETRY_STATUSES | {IN_PROGRESS_STATUS}

# Statuses by which the server says it did not act on the request (RFC 6585 §4: 429 refuses
# the request for its rate): retried for any method, when also in the retryable statuses.
UNPROCESSED_STATUSES = frozenset({429})

# Statuses that count against the circuit breaker: the server failed. 4xx are the caller's.
BREAKER_FAILURE_STATUSES = frozenset(range(500, 600))

# Statuses by which the server refuses for load (RFC 6585 §4 429, RFC 9110 §15.6.4 503): a drop
# for an adaptive concurrency limit, and not an accept for the client-side throttle.
OVERLOAD_STATUSES = frozenset({429, 503})

# Failures that prove the request never reached the server: safe to resend for any method.
NEVER_SENT_ERRORS: tuple[type[httpx.TransportError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
)

# Failures worth another attempt (the never-sent ones are among them). Not UnsupportedProtocol
# nor LocalProtocolError: a programming error fails the same way again.
RETRY_ERRORS: tuple[type[BaseException], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
    httpx.ProxyError,
)

# (scheme, host, port) as httpx spells them: what an origin is.
OriginKey = tuple[bytes, bytes, "int | None"]


def origin_key(url: httpx.URL) -> OriginKey:
    """The origin of ``url``: (scheme, host, port)."""
    return (url.raw_scheme, url.raw_host, url.port)


class Classifier:
    """The HTTP rules of one transport: which outcomes are retried, which fail the breaker.

    ``retry_statuses``, ``breaker_statuses`` and ``retry_errors`` are the tables above unless
    the user changed them; ``honour_all`` / ``honouring`` say which origins honour
    ``Idempotency-Key`` (every one, or those listed).
    """

    __slots__ = (
        "breaker_statuses",
        "honour_all",
        "honouring",
        "judged",
        "keyed_statuses",
        "retry_errors",
        "retry_statuses",
        "unprocessed_statuses",
    )

    def __init__(
        self,
        *,
        retry_statuses: Collection[int] = RETRY_STATUSES,
        breaker_statuses: Collection[int] = BREAKER_FAILURE_STATUSES,
        retry_errors: tuple[type[BaseException], ...] = RETRY_ERRORS,
        honour_all: bool = False,
        honouring: frozenset[OriginKey] = frozenset(),
    ) -> None:
        self.retry_statuses = frozenset(retry_statuses)
        self.keyed_statuses = self.retry_statuses | {IN_PROGRESS_STATUS}
        self.unprocessed_statuses = self.retry_statuses & UNPROCESSED_STATUSES
        self.judged = self.keyed_statuses  # every status any request might retry
        self.breaker_statuses = frozenset(breaker_statuses)
        self.retry_errors = retry_errors
        self.honour_all = honour_all
        self.honouring = honouring

    def honours_keys(self, request: httpx.Request) -> bool:
        """Whether ``request`` carries a key its origin was declared to honour."""
        if not (self.honour_all or (self.honouring and origin_key(request.url) in self.honouring)):
            return False
        return has_key(request)

    def may_resend(self, request: httpx.Request) -> bool:
        """Whether ``request`` may be sent again although the server may have acted on it."""
        return request.method in IDEMPOTENT_METHODS or self.honours_keys(request)

    def retry_status(self, status: int, request: httpx.Request) -> bool:
        """Whether a response ``status`` calls for another attempt of ``request``."""
        if request.method in IDEMPOTENT_METHODS:
            if status == IN_PROGRESS_STATUS:
                return self.honours_keys(request)
            return status in self.retry_statuses
        if self.honours_keys(request):
            return status in self.keyed_statuses
        return status in self.unprocessed_statuses  # the server said it did not act

    def retry_error(self, exc: BaseException, request: httpx.Request) -> bool:
        """Whether ``exc``, raised by an attempt of ``request``, calls for another attempt."""
        if not isinstance(exc, self.retry_errors) or isinstance(exc, DeadlineExceededError):
            return False  # no time left is no reason to try again
        return isinstance(exc, NEVER_SENT_ERRORS) or self.may_resend(request)

    def breaker_failure(self, exc: BaseException) -> bool:
        """Transport errors count against the breaker (the dependency did not answer); the
        caller's deadline running out before an attempt does not."""
        return isinstance(exc, httpx.TransportError) and not isinstance(exc, DeadlineExceededError)

    def breaker_failure_status(self, status: int) -> bool:
        """Whether a response status counts against the breaker (by default, every 5xx)."""
        return status in self.breaker_statuses


def request_of(outcome: object) -> httpx.Request | None:
    """The request a response or an httpx error belongs to, or ``None`` when it is unset."""
    try:
        request = outcome.request  # type: ignore[attr-defined]
    except (AttributeError, RuntimeError):  # httpx raises RuntimeError when it is unset
        return None
    return request if isinstance(request, httpx.Request) else None


def has_key(request: httpx.Request) -> bool:
    """Whether the request carries an Idempotency-Key."""
    return IDEMPOTENCY_KEY in request.headers


def refused_for_load(result: object) -> bool:
    """Whether ``result`` is a response by which the server refused for load (429, 503)."""
    return isinstance(result, httpx.Response) and result.status_code in OVERLOAD_STATUSES
