"""The transports' options: validated at construction, one object, one clock for every copy."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import typing
from typing import Any

import httpx
import pytest

from resilience import (
    Backoff,
    Bulkhead,
    BulkheadFullError,
    CircuitBreaker,
    CircuitState,
    Retry,
    RetryBudget,
)
from resilience.http import (
    AsyncResilientTransport,
    ResilientTransport,
    TransportOptions,
    resilient_async_client,
    resilient_client,
)
from resilience.http._options import TransportKwargs
from resilience.testing import FakeClock
from tests.conftest import wait_until
from tests.http_server import Driver, Reply, Stall
from tests.test_bulkhead import async_wait_until
from tests.test_http_transport import FAST


def test_the_typed_keywords_and_the_options_object_name_the_same_options() -> None:
    """``TransportKwargs`` (for type checkers) and ``TransportOptions`` list the same options,
    so adding one is one field in each."""
    fields = {field.name for field in dataclasses.fields(TransportOptions)}
    assert set(typing.get_type_hints(TransportKwargs)) == fields


@pytest.mark.parametrize(
    ("options", "error", "named"),
    [
        ({"retry": 3}, TypeError, "retry"),
        ({"breaker": "payments"}, TypeError, "breaker"),
        ({"attempt_timeout": 0}, ValueError, "attempt_timeout"),
        ({"deadline": -1.0}, ValueError, "deadline"),
        ({"retry_after_max": float("nan")}, ValueError, "retry_after_max"),
        ({"key_style": "quoted"}, ValueError, "key_style"),
        ({"idempotency_keys": "yes"}, TypeError, "idempotency_keys"),
        ({"origins_honour_keys": "https://pay.test"}, TypeError, "origins_honour_keys"),
        ({"origins_honour_keys": ["pay.test"]}, ValueError, "origins_honour_keys"),
        ({"origins_honour_keys": ["https://pay.test/v1"]}, ValueError, "origins_honour_keys"),
        ({"retry_statuses": [503, 600]}, ValueError, "retry_statuses"),
        ({"breaker_statuses": 500}, TypeError, "breaker_statuses"),
        ({"retry_errors": httpx.ReadTimeout}, TypeError, "retry_errors"),
        ({"policy_key": "path"}, TypeError, "policy_key"),
        ({"deadline_header": "Request Timeout"}, ValueError, "deadline_header"),
        ({"timeout": 1.0}, TypeError, "timeout"),
    ],
)
def test_bad_options_fail_at_construction_naming_the_parameter(
    options: dict[str, Any], error: type[Exception], named: str
) -> None:
    """Every transport option is checked when the transport is built; the error names it."""
    for build in (ResilientTransport, AsyncResilientTransport):
        with pytest.raises(error, match=named):
            build(**options)


def test_a_transport_of_the_wrong_colour_fails_at_construction() -> None:
    """A sync transport given an async inner transport (or the reverse) says so at once."""
    with pytest.raises(TypeError, match="use AsyncResilientTransport"):
        ResilientTransport(httpx.AsyncHTTPTransport())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="use ResilientTransport"):
        AsyncResilientTransport(httpx.HTTPTransport())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="inner must be a transport"):
        ResilientTransport(object())  # type: ignore[arg-type]


def test_the_per_attempt_timeout_has_one_name_everywhere(http_server: Any) -> None:
    """``attempt_timeout`` configures the transports and the factories alike; a factory's
    ``timeout`` stays httpx's own."""
    with resilient_client(attempt_timeout=0.5, timeout=2.0) as client:
        assert client._transport.options.attempt_timeout == 0.5  # type: ignore[attr-defined]
        assert client.timeout.read == 2.0
        client.get(f"{http_server.url}/r")
    assert http_server.received("/r")[0].headers["request-timeout-ms"] == "500"
    assert ResilientTransport(attempt_timeout=0.5).options.attempt_timeout == 0.5
    assert resilient_async_client(attempt_timeout=0.25)._transport.options.attempt_timeout == 0.25  # type: ignore[attr-defined]


def test_the_clock_reaches_every_per_origin_copy(driver: Driver, http_server: Any) -> None:
    """``clock=`` on the transport drives its per-origin breaker (it half-opens after
    ``advance(open_for)``), budget and retry alike."""
    clock = FakeClock()
    http_server.script("/r", [Reply(500), Reply(500), Reply(200)])
    transport = driver.transport(
        retry=Retry(1, budget=RetryBudget()),
        breaker=CircuitBreaker(minimum_calls=2, open_for=7.0),
        clock=clock,
    )
    for _ in range(2):
        driver.send(transport, "GET", f"{http_server.url}/r")
    breaker = transport.breaker_for(http_server.url)
    assert breaker.state is CircuitState.OPEN
    assert breaker._clock is clock
    assert transport._calls.origins.find(http_server.url).budget.clock is clock
    clock.advance(7.0)
    assert breaker.state is CircuitState.HALF_OPEN
    assert driver.send(transport, "GET", f"{http_server.url}/r").status_code == 200
    assert breaker.state is CircuitState.CLOSED


def test_the_clock_times_the_per_origin_bulkheads_queue(driver: Driver, http_server: Any) -> None:
    """``clock=`` reaches the per-origin bulkhead: a request queued behind a stalled one is
    refused (BulkheadFullError, never sent) when the FakeClock passes ``max_wait``, not before."""
    clock = FakeClock()
    http_server.script("/stall", [Stall()])
    transport = driver.transport(
        retry=None, breaker=None, bulkhead=Bulkhead(1, max_waiting=1, max_wait=5.0), clock=clock
    )
    stall, ok = f"{http_server.url}/stall", f"{http_server.url}/ok"

    def still_queued_until_max_wait() -> None:
        bulkhead = transport.bulkhead_for(ok)
        assert bulkhead is not None and bulkhead.clock is clock
        assert (bulkhead.active, bulkhead.waiting) == (1, 1)
        clock.advance(4.75)
        assert (bulkhead.active, bulkhead.waiting) == (1, 1)
        clock.advance(0.25)

    refused: object
    if driver.colour == "sync":
        outcomes: dict[str, object] = {}

        def get(url: str) -> threading.Thread:
            def run() -> None:
                with httpx.Client(transport=transport) as client:
                    try:
                        outcomes[url] = client.get(url)
                    except Exception as exc:
                        outcomes[url] = exc

            thread = threading.Thread(target=run, daemon=True)
            thread.start()
            return thread

        stalled = get(stall)
        http_server.wait_received(1, "/stall")
        queued = get(ok)
        wait_until(lambda: 5.0 in clock.pending_timers, "the queued request's time limit")
        still_queued_until_max_wait()
        queued.join(10)
        http_server.reset()  # ends the stall
        stalled.join(10)
        assert not stalled.is_alive() and not queued.is_alive()
        refused = outcomes[ok]
    else:

        async def scenario() -> object:
            async with httpx.AsyncClient(transport=transport) as client:
                stalled = asyncio.create_task(client.get(stall))
                await asyncio.to_thread(http_server.wait_received, 1, "/stall")
                queued = asyncio.create_task(client.get(ok))
                await async_wait_until(lambda: 5.0 in clock.pending_timers, "the time limit")
                still_queued_until_max_wait()
                [outcome] = await asyncio.gather(queued, return_exceptions=True)
                stalled.cancel()
                await asyncio.gather(stalled, return_exceptions=True)
                return outcome

        refused = asyncio.run(scenario())
    assert isinstance(refused, BulkheadFullError)
    assert http_server.received("/ok") == []


def test_retrys_own_on_narrows_and_on_result_adds(driver: Driver, http_server: Any) -> None:
    """``Retry(on=...)`` limits the errors the HTTP rules retry; ``Retry(on_result=...)`` adds
    responses to retry (for requests that may be resent) — neither is ignored."""
    http_server.script("/r", [Reply(503), Reply(200)])
    only_timeouts = Retry(3, on=httpx.TimeoutException, backoff=FAST)
    narrowed = driver.transport(retry=only_timeouts, deadline=None)
    assert driver.send(narrowed, "GET", f"{http_server.url}/r").status_code == 200  # statuses
    with pytest.raises(httpx.ConnectError) as caught:
        driver.send(narrowed, "GET", "http://127.0.0.1:1/r")
    assert not any("attempt" in note for note in getattr(caught.value, "__notes__", []))

    http_server.script("/pending", [Reply(200, headers={"X-State": "pending"}), Reply(200)])

    def pending(response: httpx.Response) -> bool:
        return response.headers.get("X-State") == "pending"

    polling = driver.transport(retry=Retry(3, on_result=pending, backoff=FAST))
    response = driver.send(polling, "GET", f"{http_server.url}/pending")
    assert "X-State" not in response.headers
    assert len(http_server.received("/pending")) == 2

    http_server.script("/orders", [Reply(200, headers={"X-State": "pending"}), Reply(200)])
    driver.send(polling, "POST", f"{http_server.url}/orders")  # may not be resent: one
    assert len(http_server.received("/orders")) == 1


def test_policies_can_be_keyed_per_route(driver: Driver, http_server: Any) -> None:
    """``policy_key`` puts each route behind its own breaker: a failing route opens its own
    and leaves the other's closed."""

    def route(request: httpx.Request) -> str:
        return request.url.path.split("/")[1]

    http_server.script("/search/q", [Reply(500)])
    transport = driver.transport(
        retry=None, breaker=CircuitBreaker(minimum_calls=2), policy_key=route
    )
    for _ in range(2):
        driver.send(transport, "GET", f"{http_server.url}/search/q")
    assert driver.send(transport, "GET", f"{http_server.url}/orders/1").status_code == 200
    assert transport.breaker_for(f"{http_server.url}/search/x").state is CircuitState.OPEN
    assert transport.breaker_for(f"{http_server.url}/orders/2").state is CircuitState.CLOSED
    assert transport.breaker_for(f"{http_server.url}/search/x").name.endswith("[search]")


def test_options_are_frozen_and_shown() -> None:
    """The options object cannot change after construction; the transport shows its own."""
    options = ResilientTransport(deadline=3.0, retry=Retry(2, backoff=Backoff())).options
    assert options.deadline == 3.0 and options.retry is not None and options.retry.attempts == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.deadline = 5.0  # type: ignore[misc]


def test_replace_changes_some_options_and_validates_like_construction() -> None:
    """``replace(**changes)`` returns new options with the rest kept; a bad value fails as at
    construction, naming it, and an unknown keyword is a TypeError naming it."""
    options = TransportOptions(deadline=3.0, origins_honour_keys=["https://pay.test"])
    changed = options.replace(attempt_timeout=0.5, retry=None)
    assert (changed.attempt_timeout, changed.retry, changed.deadline) == (0.5, None, 3.0)
    assert changed.origins_honour_keys == frozenset({"https://pay.test"})
    assert options.attempt_timeout == 10.0 and options.retry is not None  # unchanged
    assert options.replace() == options
    with pytest.raises(ValueError, match="attempt_timeout"):
        options.replace(attempt_timeout=0)
    with pytest.raises(TypeError, match=r"key_stile \(did you mean 'key_style'\?\)"):
        options.replace(key_stile="token")
