"""HTTP classification: which methods, statuses and httpx errors may be retried."""

from __future__ import annotations

import httpx
import pytest

from resilience.http._classify import (
    BREAKER_FAILURE_STATUSES,
    IDEMPOTENT_METHODS,
    Classifier,
    origin_key,
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
URL = "http://api.test/x"
DEFAULT = Classifier()
HONOURING = Classifier(honour_all=True)


def request(method: str, keyed: bool = False, url: str = URL) -> httpx.Request:
    headers = {"Idempotency-Key": new_idempotency_key()} if keyed else {}
    return httpx.Request(method, url, headers=headers)


def test_idempotent_methods_follow_rfc_9110() -> None:
    """RFC 9110 §9.2.2: the safe methods plus PUT and DELETE, and nothing else; a keyed POST
    may be resent only to an origin declared to honour keys."""
    assert IDEMPOTENT_METHODS == {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"}
    assert all(DEFAULT.may_resend(request(method)) for method in IDEMPOTENT_METHODS)
    assert not DEFAULT.may_resend(request("POST")) and not DEFAULT.may_resend(request("PATCH"))
    assert not DEFAULT.may_resend(request("POST", keyed=True))
    assert HONOURING.may_resend(request("POST", keyed=True))
    assert not HONOURING.may_resend(request("POST"))  # no key: nothing to honour


def test_key_honouring_can_be_declared_per_origin() -> None:
    """Declaring one origin key-honouring makes keyed POSTs resendable there only."""
    rules = Classifier(honouring=frozenset({origin_key(httpx.URL("https://pay.test"))}))
    assert rules.may_resend(request("POST", keyed=True, url="https://pay.test/charges"))
    assert not rules.may_resend(request("POST", keyed=True, url="https://other.test/charges"))
    assert not rules.may_resend(request("POST", keyed=True, url="http://pay.test/charges"))


@pytest.mark.parametrize("error", NEVER_SENT)
def test_failures_that_prove_nothing_was_sent_are_retried_for_any_method(error: type) -> None:
    """Connect errors and pool timeouts are retryable even for a keyless POST."""
    assert DEFAULT.retry_error(error("x"), request("POST"))


@pytest.mark.parametrize("error", MAYBE_PROCESSED)
def test_failures_after_sending_are_retried_only_when_resendable(error: type) -> None:
    """A POST is not resent after a read/write or protocol error, keyed or not, unless its
    origin honours keys; a GET is."""
    assert not DEFAULT.retry_error(error("x"), request("POST"))
    assert not DEFAULT.retry_error(error("x"), request("POST", keyed=True))
    assert HONOURING.retry_error(error("x"), request("POST", keyed=True))
    assert DEFAULT.retry_error(error("x"), request("GET"))


@pytest.mark.parametrize(
    "error", [httpx.UnsupportedProtocol("x"), httpx.LocalProtocolError("x"), ValueError("x")]
)
def test_programming_errors_are_never_retried(error: Exception) -> None:
    """Errors that would fail the same way again, and non-httpx errors, are not retried."""
    assert not DEFAULT.retry_error(error, request("GET"))


def test_retry_errors_can_be_changed() -> None:
    """``retry_errors`` replaces the table: listed errors are retried (safety still applies)."""
    rules = Classifier(retry_errors=(httpx.ConnectError, ValueError))
    assert rules.retry_error(ValueError("x"), request("GET"))
    assert not rules.retry_error(ValueError("x"), request("POST"))
    assert not rules.retry_error(httpx.ReadTimeout("x"), request("GET"))


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_transient_statuses_are_retried_for_resendable_requests(status: int) -> None:
    """The default retryable statuses apply to GET, and to keyed POSTs to honouring origins."""
    assert DEFAULT.retry_status(status, request("GET"))
    assert HONOURING.retry_status(status, request("POST", keyed=True))


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_a_post_is_not_resent_after_a_response_that_may_follow_its_processing(
    status: int,
) -> None:
    """The server saw the POST and may have acted: resending it could apply it twice."""
    assert not DEFAULT.retry_status(status, request("POST"))
    assert not DEFAULT.retry_status(status, request("POST", keyed=True))


def test_429_proves_the_server_did_not_act() -> None:
    """429 refuses the request for its rate: any request may be resent after it, unless 429
    was taken out of the retryable statuses."""
    assert DEFAULT.retry_status(429, request("POST"))
    assert not Classifier(retry_statuses={503}).retry_status(429, request("POST"))


@pytest.mark.parametrize("status", [200, 201, 301, 400, 401, 403, 404, 422, 501])
def test_final_statuses_are_never_retried(status: int) -> None:
    """Success, redirects, client errors and 501 are final."""
    assert not HONOURING.retry_status(status, request("GET", keyed=True))
    assert not HONOURING.retry_status(status, request("POST", keyed=True))


def test_conflict_is_retried_only_for_keyed_requests_to_honouring_origins() -> None:
    """409 on a keyed request to a key-honouring origin means the original is in flight; on
    any other request it is final."""
    assert HONOURING.retry_status(409, request("POST", keyed=True))
    assert not DEFAULT.retry_status(409, request("POST", keyed=True))
    assert not HONOURING.retry_status(409, request("GET"))


def test_retry_statuses_can_be_changed() -> None:
    """``retry_statuses`` replaces the table of statuses worth another attempt."""
    rules = Classifier(retry_statuses={503, 520})
    assert rules.retry_status(520, request("GET"))
    assert not rules.retry_status(500, request("GET"))


def test_breaker_failures_are_transport_errors_and_5xx() -> None:
    """Transport errors and 5xx count against the breaker; 4xx and other errors do not."""
    assert DEFAULT.breaker_failure(httpx.ReadTimeout("x"))
    assert not DEFAULT.breaker_failure(ValueError("x"))
    assert DEFAULT.breaker_failure_status(500) and DEFAULT.breaker_failure_status(503)
    assert not DEFAULT.breaker_failure_status(404) and not DEFAULT.breaker_failure_status(429)
    assert BREAKER_FAILURE_STATUSES == frozenset(range(500, 600))
    assert Classifier(breaker_statuses={429}).breaker_failure_status(429)


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
