"""HTTP classification: which methods, statuses and httpx errors may be retried."""

from __future__ import annotations

import httpx
import pytest

from resilience.http._classify import (
    IDEMPOTENT_METHODS,
    is_breaker_failure,
    may_resend,
    retryable_error,
    retryable_status,
)
from resilience.http._keys import new_idempotency_key

NEVER_SENT = [httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout]
MAYBE_PROCESSED = [
    httpx.ReadTimeout,
    httpx.ReadError,
    httpx.WriteTimeout,
    httpx.WriteError,
    httpx.RemoteProtocolError,
]


def test_idempotent_methods_follow_rfc_9110() -> None:
    """RFC 9110 §9.2.2: the safe methods plus PUT and DELETE, and nothing else."""
    assert IDEMPOTENT_METHODS == {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"}
    assert not may_resend("POST", False) and not may_resend("PATCH", False)
    assert may_resend("POST", True)


@pytest.mark.parametrize("error", NEVER_SENT)
def test_failures_that_prove_nothing_was_sent_are_retried_for_any_method(error: type) -> None:
    """Connect errors and pool timeouts are retryable even for a keyless POST."""
    assert retryable_error(error("x"), resendable=False)


@pytest.mark.parametrize("error", MAYBE_PROCESSED)
def test_failures_after_sending_are_retried_only_when_resendable(error: type) -> None:
    """A keyless POST is never resent after a read/write error or a protocol error."""
    assert not retryable_error(error("x"), resendable=False)
    assert retryable_error(error("x"), resendable=True)


@pytest.mark.parametrize(
    "error", [httpx.UnsupportedProtocol("x"), httpx.LocalProtocolError("x"), ValueError("x")]
)
def test_programming_errors_are_never_retried(error: Exception) -> None:
    """Errors that would fail the same way again, and non-httpx errors, are not retried."""
    assert not retryable_error(error, resendable=True)


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_transient_statuses_are_retried_for_idempotent_requests(status: int) -> None:
    """The default retryable statuses apply to GET and to keyed POSTs."""
    assert retryable_status(status, "GET", has_key=False)
    assert retryable_status(status, "POST", has_key=True)


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_a_keyless_post_is_never_resent_after_a_response(status: int) -> None:
    """The server saw the keyless POST: resending it could apply it twice."""
    assert not retryable_status(status, "POST", has_key=False)


@pytest.mark.parametrize("status", [200, 201, 301, 400, 401, 403, 404, 422, 501])
def test_final_statuses_are_never_retried(status: int) -> None:
    """Success, redirects, client errors and 501 are final."""
    assert not retryable_status(status, "GET", has_key=True)


def test_conflict_is_retried_only_for_keyed_requests() -> None:
    """409 on a keyed request means the original is in flight; on a keyless one it is final."""
    assert retryable_status(409, "POST", has_key=True)
    assert not retryable_status(409, "GET", has_key=False)


def test_breaker_failures_are_transport_errors_and_5xx() -> None:
    """Transport errors and 5xx count against the breaker; 4xx and other errors do not."""
    assert is_breaker_failure(httpx.ReadTimeout("x"))
    assert is_breaker_failure(500) and is_breaker_failure(503)
    assert not is_breaker_failure(404) and not is_breaker_failure(429)
    assert not is_breaker_failure(ValueError("x"))


def test_idempotency_keys_are_unique_uuid4s_in_both_styles() -> None:
    """Keys are fresh UUID4s: quoted as an RFC 8941 sf-string by default, or a bare token."""
    quoted = new_idempotency_key()
    assert quoted.startswith('"') and quoted.endswith('"') and len(quoted) == 38
    token = new_idempotency_key("token")
    assert len(token) == 36 and '"' not in token and token[14] == "4"
    assert len({new_idempotency_key() for _ in range(100)}) == 100
    import uuid

    for _ in range(200):  # version and variant bits right, formatted exactly as uuid4()'s
        key = new_idempotency_key("token")
        parsed = uuid.UUID(key)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, key)
