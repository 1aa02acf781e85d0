"""tenacity strategies with our HTTP rules, for users who keep their own tenacity loops.

>>> import tenacity
>>> from resilience.http.tenacity import retry_if_http_retryable, wait_retry_after
>>> policy = tenacity.Retrying(
...     retry=retry_if_http_retryable(),
...     wait=wait_retry_after(fallback=tenacity.wait_random_exponential(multiplier=0.1)),
...     stop=tenacity.stop_after_attempt(4),
... )

Use them around ``client.request(...)``: the strategy classifies the outcome exactly as the
transports do (method, Idempotency-Key, status, which httpx error) from the request that httpx
attaches to both responses and exceptions. Requires ``tenacity``.
"""

from __future__ import annotations

import httpx
from tenacity import RetryCallState
from tenacity.retry import retry_base
from tenacity.wait import wait_base, wait_exponential_jitter

from resilience.http._classify import (
    has_key,
    may_resend,
    request_of,
    retryable_error,
    retryable_status,
)
from resilience.http._retry_after import DEFAULT_RETRY_AFTER_MAX, parse_retry_after

__all__ = ["retry_if_http_retryable", "wait_retry_after"]


class retry_if_http_retryable(retry_base):  # tenacity names its strategies in lower case
    """Retry when the HTTP rules allow it: a retryable status or transport error, for a request
    that is idempotent, keyed, or (for errors) provably never sent."""

    def __call__(self, retry_state: RetryCallState) -> bool:
        outcome = retry_state.outcome
        if outcome is None:
            return False
        if outcome.failed:
            exc = outcome.exception()
            request = request_of(exc)
            if exc is None or request is None:
                return False
            return retryable_error(exc, may_resend(request.method, has_key(request)))
        response = outcome.result()
        if not isinstance(response, httpx.Response):
            return False
        request = request_of(response)
        if request is None:
            return False
        return retryable_status(response.status_code, request.method, has_key(request))


class wait_retry_after(wait_base):  # tenacity names its strategies in lower case
    """Wait for the response's ``Retry-After`` when it is longer than ``fallback``'s wait.

    Malformed or absent headers fall back to ``fallback``; values are capped at ``maximum``.
    """

    def __init__(
        self,
        fallback: wait_base | None = None,
        maximum: float = DEFAULT_RETRY_AFTER_MAX,
    ) -> None:
        self.fallback = fallback if fallback is not None else wait_exponential_jitter()
        self.maximum = maximum

    def __call__(self, retry_state: RetryCallState) -> float:
        backoff = float(self.fallback(retry_state))
        outcome = retry_state.outcome
        if outcome is None or outcome.failed:
            return backoff
        response = outcome.result()
        if not isinstance(response, httpx.Response):
            return backoff
        hint = parse_retry_after(
            response.headers.get("Retry-After"),
            date=response.headers.get("Date"),
            maximum=self.maximum,
        )
        return backoff if hint is None or hint < backoff else hint
