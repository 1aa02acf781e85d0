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

from collections.abc import Collection

import httpx
from tenacity import RetryCallState
from tenacity.retry import retry_base
from tenacity.wait import wait_base, wait_exponential_jitter

from resilience.http._classify import RETRY_ERRORS, RETRY_STATUSES, Classifier, request_of
from resilience.http._options import TransportOptions
from resilience.http._retry_after import DEFAULT_RETRY_AFTER_MAX, parse_retry_after

__all__ = ["retry_if_http_retryable", "wait_retry_after"]


class retry_if_http_retryable(retry_base):  # tenacity names its strategies in lower case
    """Retry when the HTTP rules allow it, as the transports do: a retryable status or error,
    for a request that is idempotent, keyed to an origin in ``origins_honour_keys`` (``True``:
    every origin), or (connect errors, 429) provably not acted on by the server."""

    def __init__(
        self,
        *,
        origins_honour_keys: bool | Collection[str] = False,
        retry_statuses: Collection[int] = RETRY_STATUSES,
        retry_errors: tuple[type[BaseException], ...] = RETRY_ERRORS,
    ) -> None:
        options = TransportOptions(  # validates, naming the parameter
            origins_honour_keys=origins_honour_keys,
            retry_statuses=retry_statuses,
            retry_errors=retry_errors,
        )
        self._rules = Classifier(
            retry_statuses=options.retry_statuses,
            retry_errors=options.retry_errors,
            honour_all=options.origins_honour_keys is True,
            honouring=options.honouring_origins(),
        )

    def __call__(self, retry_state: RetryCallState) -> bool:
        outcome = retry_state.outcome
        if outcome is None:
            return False
        if outcome.failed:
            exc = outcome.exception()
            request = request_of(exc)
            if exc is None or request is None:
                return False
            return self._rules.retry_error(exc, request)
        response = outcome.result()
        if not isinstance(response, httpx.Response):
            return False
        request = request_of(response)
        if request is None:
            return False
        return self._rules.retry_status(response.status_code, request)


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
