"""tenacity strategies with the HTTP rules, for users who keep their own tenacity loops."""

from __future__ import annotations

from typing import Any

import httpx
import respx
import tenacity

from resilience.http.tenacity import retry_if_http_retryable, wait_retry_after


def retrying(sleeps: list[float], **rules: Any) -> tenacity.Retrying:
    return tenacity.Retrying(
        retry=retry_if_http_retryable(**rules),
        wait=wait_retry_after(fallback=tenacity.wait_fixed(0.5)),
        stop=tenacity.stop_after_attempt(3),
        sleep=sleeps.append,
        reraise=True,
    )


@respx.mock
def test_retryable_status_with_retry_after_waits_for_it() -> None:
    """A GET answered 503 with Retry-After: 2 is retried after 2 s, longer than the fallback."""
    route = respx.get("http://api.test/r").mock(
        side_effect=[httpx.Response(503, headers={"Retry-After": "2"}), httpx.Response(200)]
    )
    sleeps: list[float] = []
    with httpx.Client() as client:
        response = retrying(sleeps)(client.get, "http://api.test/r")
    assert response.status_code == 200
    assert route.call_count == 2
    assert sleeps == [2.0]


@respx.mock
def test_keyless_post_is_not_retried_after_a_5xx() -> None:
    """The strategy applies the same method rules as the transports."""
    route = respx.post("http://api.test/charges").mock(return_value=httpx.Response(503))
    with httpx.Client() as client:
        response = retrying([])(client.post, "http://api.test/charges")
    assert response.status_code == 503
    assert route.call_count == 1


@respx.mock
def test_keyed_post_is_retried_and_connect_errors_always() -> None:
    """A keyed POST may be resent to an origin declared key-honouring (a 409 means its
    original still runs); a connect error proves nothing was sent; elsewhere the 409 is final."""
    route = respx.post("http://api.test/charges").mock(
        side_effect=[httpx.ConnectError("refused"), httpx.Response(409), httpx.Response(201)]
    )
    sleeps: list[float] = []
    with httpx.Client() as client:
        response = retrying(sleeps, origins_honour_keys={"http://api.test"})(
            client.post, "http://api.test/charges", headers={"Idempotency-Key": "k-1"}
        )
    assert response.status_code == 201
    assert route.call_count == 3
    assert sleeps == [0.5, 0.5]

    route.side_effect = [httpx.ConnectError("refused"), httpx.Response(409)]
    with httpx.Client() as client:
        response = retrying([])(
            client.post, "http://api.test/charges", headers={"Idempotency-Key": "k-2"}
        )
    assert response.status_code == 409
    assert route.call_count == 5


@respx.mock
def test_read_timeout_on_a_keyless_post_is_raised_at_once() -> None:
    """A keyless POST that may have been processed is not resent."""
    respx.post("http://api.test/charges").mock(side_effect=httpx.ReadTimeout("slow"))
    with httpx.Client() as client:
        try:
            retrying([])(client.post, "http://api.test/charges")
        except httpx.ReadTimeout:
            pass
        else:
            raise AssertionError("expected ReadTimeout")
    assert respx.calls.call_count == 1
