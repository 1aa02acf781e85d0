"""HTTP retry semantics as named data, and failures sorted by what they prove.

Sources: RFC 9110 §9.2 (safe and idempotent methods), urllib3's ``Retry`` (connect errors are
"raised before the request is sent"; read errors "may have side-effects"), gRPC's transparent
retries, and draft-ietf-httpapi-idempotency-key-header (a keyed request may be resent).
"""

from __future__ import annotations

import httpx

from resilience.http._keys import IDEMPOTENCY_KEY

__all__ = [
    "BREAKER_FAILURE_STATUS",
    "IDEMPOTENT_METHODS",
    "KEYED_METHODS",
    "KEYED_RETRY_STATUSES",
    "NEVER_SENT_ERRORS",
    "RETRY_STATUSES",
    "has_key",
    "is_breaker_failure",
    "may_resend",
    "retryable_error",
    "request_of",
    "retryable_status",
]

# RFC 9110 §9.2.2: the safe methods plus PUT and DELETE; repeating them has the effect of one.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})

# Unsafe and not idempotent: these get an Idempotency-Key so that a resend is safe.
KEYED_METHODS = frozenset({"POST", "PATCH"})

# Statuses worth another try: timeout, throttled, and the transient server errors.
# Never 400, 401, 403, 404, 422 (the request itself is wrong) nor 501 (it will stay unimplemented).
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

# 409 Conflict on a keyed request means "the original is still in flight" (idempotency draft
# §2.7): no correction is needed before retrying. On a keyless request it is a real conflict.
KEYED_RETRY_STATUSES = RETRY_STATUSES | {409}

# Failures that prove the request never reached the server: safe to resend for any method.
NEVER_SENT_ERRORS: tuple[type[httpx.TransportError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
)

# Everything else in httpx.TransportError (ReadTimeout, ReadError, WriteTimeout, WriteError,
# RemoteProtocolError, ...) may have reached the application: only a request that is safe to
# repeat (idempotent method, or carrying an Idempotency-Key) may be resent after it.
# Programming errors (UnsupportedProtocol, LocalProtocolError, ProxyError with a bad URL) would
# fail the same way again: they are never retried.
_NEVER_RETRIED: tuple[type[httpx.TransportError], ...] = (
    httpx.UnsupportedProtocol,
    httpx.LocalProtocolError,
)

BREAKER_FAILURE_STATUS = 500  # 5xx count against the breaker; 4xx are the caller's problem


def may_resend(method: str, has_key: bool) -> bool:
    """Whether a request may be repeated after it might have been processed."""
    return has_key or method in IDEMPOTENT_METHODS


def retryable_error(exc: BaseException, resendable: bool) -> bool:
    """Whether the transport error ``exc`` may be retried for a request that is (not) resendable."""
    if not isinstance(exc, httpx.TransportError) or isinstance(exc, _NEVER_RETRIED):
        return False
    return resendable or isinstance(exc, NEVER_SENT_ERRORS)


def retryable_status(status: int, method: str, has_key: bool) -> bool:
    """Whether a response status calls for another attempt of this request."""
    if not may_resend(method, has_key):
        return False  # the server saw it: a keyless POST is never resent after a response
    return status in (KEYED_RETRY_STATUSES if has_key else RETRY_STATUSES)


def is_breaker_failure(outcome: BaseException | int) -> bool:
    """Transport errors, timeouts and 5xx count against the breaker; 4xx do not."""
    if isinstance(outcome, int):
        return outcome >= BREAKER_FAILURE_STATUS
    return isinstance(outcome, httpx.TransportError)


def request_of(outcome: object) -> httpx.Request | None:
    """The request a response or an httpx error belongs to, or ``None`` when it is unset."""
    try:
        request = outcome.request  # type: ignore[attr-defined]
    except (AttributeError, RuntimeError):  # httpx raises RuntimeError when it is unset
        return None
    return request if isinstance(request, httpx.Request) else None


def has_key(request: httpx.Request) -> bool:
    """Whether the request carries an Idempotency-Key (so a resend is safe)."""
    return IDEMPOTENCY_KEY in request.headers
