"""Transport classification with respx (unit level; integration tests use a real server)."""

from __future__ import annotations

import httpx
import pytest
import respx

from resilience import Backoff, Retry
from resilience.http import ResilientTransport

FAST = Retry(3, backoff=Backoff(initial=0.0, maximum=0.0))


@pytest.mark.parametrize(
    ("method", "status", "keyed", "honoured", "calls"),
    [
        ("GET", 503, False, False, 3),
        ("PUT", 502, False, False, 3),
        ("DELETE", 504, False, False, 3),
        ("GET", 404, False, False, 1),
        ("GET", 501, False, False, 1),
        ("POST", 503, False, False, 1),
        ("POST", 503, True, False, 1),
        ("POST", 503, True, True, 3),
        ("POST", 429, False, False, 3),
        ("PATCH", 429, True, False, 3),
        ("POST", 409, True, True, 3),
        ("POST", 409, True, False, 1),
        ("GET", 409, False, True, 1),
        ("POST", 422, True, True, 1),
    ],
)
@respx.mock
def test_which_responses_are_retried(
    method: str, status: int, keyed: bool, honoured: bool, calls: int
) -> None:
    """Statuses are retried for idempotent requests and for keyed ones to origins that honour
    keys, and only the transient ones; 429 for any request."""
    route = respx.route(method=method, url="http://api.test/x").mock(
        return_value=httpx.Response(status)
    )
    transport = ResilientTransport(
        retry=FAST,
        idempotency_keys=keyed,
        origins_honour_keys=honoured,
        breaker=None,
        deadline=None,
    )
    with httpx.Client(transport=transport) as client:
        assert client.request(method, "http://api.test/x").status_code == status
    assert route.call_count == calls


@pytest.mark.parametrize(
    ("method", "error", "calls"),
    [
        ("POST", httpx.ConnectError, 3),
        ("POST", httpx.ConnectTimeout, 3),
        ("POST", httpx.PoolTimeout, 3),
        ("POST", httpx.ReadTimeout, 1),
        ("POST", httpx.WriteError, 1),
        ("POST", httpx.RemoteProtocolError, 1),
        ("GET", httpx.ReadTimeout, 3),
        ("GET", httpx.RemoteProtocolError, 3),
        ("GET", httpx.UnsupportedProtocol, 1),
    ],
)
@respx.mock
def test_which_errors_are_retried(method: str, error: type[Exception], calls: int) -> None:
    """Errors proving the request never left are retried for any method; others only when safe."""
    route = respx.route(method=method, url="http://api.test/x").mock(side_effect=error("x"))
    transport = ResilientTransport(retry=FAST, idempotency_keys=False)
    with httpx.Client(transport=transport) as client, pytest.raises(error):
        client.request(method, "http://api.test/x")
    assert route.call_count == calls
