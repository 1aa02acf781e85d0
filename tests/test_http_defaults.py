"""The standard pipeline: what the zero-config client does in an outage and after it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from resilience import CircuitOpenError, CircuitState
from resilience.http import AsyncResilientTransport, ResilientTransport, resilient_client
from resilience.http._options import (
    STANDARD_ATTEMPT_TIMEOUT,
    STANDARD_BREAKER,
    STANDARD_DEADLINE,
    STANDARD_RETRY,
)
from resilience.testing import FakeClock
from tests.http_server import Reply

CALLS = 600


def test_the_zero_config_client_spares_a_dependency_in_an_outage_and_recovers(
    http_server: Any,
) -> None:
    """A client given nothing but a clock, against a real server answering 503 to everything:
    at most 1.1 requests per call over 600 calls; then, healthy again, the first call after
    ``open_for`` is the breaker's one trial and succeeds."""
    clock = FakeClock()
    http_server.script("/r", [Reply(503, body=b"down")])
    outcomes = {"503": 0, "open": 0}
    with resilient_client(base_url=http_server.url, clock=clock) as client:
        for _ in range(CALLS):
            try:
                response = client.get("/r")
            except CircuitOpenError:
                outcomes["open"] += 1
            else:
                assert response.status_code == 503
                outcomes["503"] += 1
        sent = len(http_server.received("/r"))
        assert sent / CALLS <= 1.1
        assert outcomes["open"] > 0 and outcomes["503"] + outcomes["open"] == CALLS

        http_server.script("/r", [Reply(200, body=b"back")])
        breaker = client._transport.breaker_for(http_server.url)  # type: ignore[attr-defined]
        assert breaker.state is CircuitState.OPEN
        with pytest.raises(CircuitOpenError) as still_open:
            client.get("/r")
        assert still_open.value.retry_after <= STANDARD_BREAKER._settings["open_for"] + 1e-9
        # what is left of open_for (+1 µs: fake seconds are floats, 6.007 + 5.0 - 6.007 < 5.0)
        clock.advance(still_open.value.retry_after + 1e-6)
        response = client.get("/r")
        assert (response.status_code, response.content) == (200, b"back")
        assert len(http_server.received("/r")) == sent + 1  # the one trial
        assert breaker.state is CircuitState.CLOSED


def test_the_standard_parts_are_on_by_default_and_each_can_be_switched_off() -> None:
    """Without options a transport has the standard deadline, attempt timeout, retry with a
    budget and breaker; ``None`` switches each off."""
    for build in (ResilientTransport, AsyncResilientTransport):
        options = build().options
        assert options.deadline == STANDARD_DEADLINE == 30.0
        assert options.attempt_timeout == STANDARD_ATTEMPT_TIMEOUT == 10.0
        assert options.retry is STANDARD_RETRY and STANDARD_RETRY.attempts == 3
        assert STANDARD_RETRY.budget is not None and STANDARD_RETRY.budget.ratio == 0.2
        assert options.breaker is STANDARD_BREAKER
        off = build(retry=None, breaker=None, deadline=None, attempt_timeout=None).options
        assert (off.retry, off.breaker, off.deadline, off.attempt_timeout) == (None,) * 4


def test_a_zero_config_get_retries_a_transient_failure(http_server: Any) -> None:
    """The standard retry takes a GET through two 503s."""
    clock = FakeClock()
    http_server.script("/r", [Reply(503), Reply(503), Reply(200)])
    with httpx.Client(transport=ResilientTransport(clock=clock)) as client:
        assert client.get(f"{http_server.url}/r").status_code == 200
    assert len(http_server.received("/r")) == 3
    assert len(clock.sleeps) == 2 and all(0.0 <= s <= 0.2 for s in clock.sleeps)
