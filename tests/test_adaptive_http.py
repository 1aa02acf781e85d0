"""The transports' ``limiter=`` and ``throttle=`` (per origin, on a real loopback server), and a
percentile ``hedge=`` copied per origin."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import httpx
import pytest

from resilience import (
    AdaptiveConcurrency,
    AdaptiveThrottle,
    AimdLimit,
    CircuitBreaker,
    CircuitOpenError,
    ConcurrencyLimitedError,
    Hedge,
    RetryBudget,
    ThrottledError,
)
from resilience.http import AsyncResilientTransport
from tests.http_server import Driver, Reply, Stall


def origin_of(transport: Any, url: str) -> Any:
    origin = transport._calls.origins.find(url)
    assert origin is not None, "no request went to this origin yet"
    return origin


def test_a_503_is_a_drop_and_a_200_a_sample_for_the_origins_limiter(
    driver: Driver, http_server: Any
) -> None:
    """The origin's limiter copy shrinks on a 503 (AIMD halves it) and grows on answers."""
    http_server.script("/busy", [Reply(503)])
    limiter = AdaptiveConcurrency(AimdLimit(initial_limit=8, backoff_ratio=0.5), name="db")
    transport = driver.transport(retry=None, breaker=None, limiter=limiter)
    url = f"{http_server.url}/busy"
    assert driver.send(transport, "GET", url).status_code == 503
    copy = origin_of(transport, url).limiter
    assert copy is not limiter and copy.name.startswith("db[") and copy.limit == 4
    assert limiter.limit == 8  # the template is never used itself
    http_server.script("/ok", [Reply(200)])
    at_limit = AdaptiveConcurrency(AimdLimit(initial_limit=1))
    transport = driver.transport(retry=None, breaker=None, limiter=at_limit)
    assert driver.send(transport, "GET", f"{http_server.url}/ok").status_code == 200
    grown = origin_of(transport, f"{http_server.url}/ok").limiter
    assert grown.limit == 2 and grown.in_flight == 0  # an answer at its limit grows it


def test_over_the_limit_a_request_is_refused_without_being_sent(http_server: Any) -> None:
    """With one request stalled at a limit of 1, the next raises ConcurrencyLimitedError at
    once and never reaches the server; cancelling the stalled one frees the slot."""
    http_server.script("/stall", [Stall()])
    http_server.script("/ok", [Reply(200)])
    limiter = AdaptiveConcurrency(AimdLimit(initial_limit=1))
    transport = AsyncResilientTransport(retry=None, breaker=None, limiter=limiter)

    async def main() -> None:
        async with httpx.AsyncClient(transport=transport) as client:
            stalled = asyncio.create_task(client.get(f"{http_server.url}/stall"))
            await asyncio.to_thread(http_server.wait_received, 1, "/stall")
            with pytest.raises(ConcurrencyLimitedError) as refused:
                await client.get(f"{http_server.url}/ok")
            assert refused.value.limit == 1 and refused.value.in_flight == 1
            stalled.cancel()
            with pytest.raises(asyncio.CancelledError):
                await stalled
            assert (await client.get(f"{http_server.url}/ok")).status_code == 200

    asyncio.run(main())
    assert len(http_server.received("/ok")) == 1


def test_the_throttle_refuses_locally_once_the_origin_refuses(
    driver: Driver, http_server: Any
) -> None:
    """Against an origin answering 503 to everything, most requests are refused locally
    (ThrottledError, never retried) and the origin sees only the rest."""
    http_server.script("/down", [Reply(503)])
    throttle = AdaptiveThrottle(rng=random.Random(5))
    transport = driver.transport(breaker=None, throttle=throttle)
    url = f"{http_server.url}/down"
    refused = 0
    for _ in range(40):
        try:
            driver.send(transport, "GET", url)
        except ThrottledError:
            refused += 1
    copy = origin_of(transport, url).throttle
    assert refused == copy.refusals and refused >= 10
    assert throttle.refusals == 0  # the template is never used itself
    # Each GET that was let through was retried (3 attempts) unless the throttle refused one.
    assert len(http_server.received("/down")) < 3 * 40 - refused


def test_a_percentile_hedge_is_copied_per_origin_with_its_settings(
    driver: Driver, http_server: Any
) -> None:
    """``hedge=Hedge("p95", ...)`` keeps its percentile, warm-up, floor and budget on each
    origin's copy: after the warm-up, a slow answer gets a copy after the floor."""
    http_server.script("/fast", [Reply(200)])
    http_server.script("/slow", [Reply(200, delay=2.0), Reply(200)])
    budget = RetryBudget(1.0, 0.0, 60.0, name="hedges")
    transport = driver.transport(hedge=Hedge("p95", warmup=3, min_delay=0.05, budget=budget))
    for _ in range(3):  # the same origin: these warm its tracker up
        assert driver.send(transport, "GET", f"{http_server.url}/fast").status_code == 200
    assert driver.send(transport, "GET", f"{http_server.url}/slow").status_code == 200
    assert len(http_server.wait_received(2, "/slow")) == 2  # the slow one, and its copy


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("limiter", AimdLimit(), "limiter must be a AdaptiveConcurrency or None"),
        ("throttle", 2.0, "throttle must be a AdaptiveThrottle or None"),
    ],
)
def test_the_options_are_checked(driver: Driver, option: str, value: object, message: str) -> None:
    """A limiter or throttle of the wrong type is refused at construction, by name."""
    with pytest.raises(TypeError, match=message):
        driver.transport(**{option: value})


def test_limiter_refusals_are_no_outcome_for_the_origins_throttle(
    driver: Driver, http_server: Any
) -> None:
    """With ``limiter=`` and ``throttle=``, requests the origin's limiter refused were never
    sent: its throttle counts neither a request nor an accept for them (the audit saw 50
    counted as accepts: counts (51, 50))."""
    http_server.script("/ok", [Reply(200)])
    limiter = AdaptiveConcurrency(AimdLimit(initial_limit=1, max_limit=1))
    transport = driver.transport(retry=None, breaker=None, limiter=limiter, throttle=throttle_())
    url = f"{http_server.url}/ok"
    assert driver.send(transport, "GET", url).status_code == 200
    origin = origin_of(transport, url)
    assert origin.limiter._try_acquire()  # another request holds the only slot
    for _ in range(50):
        with pytest.raises(ConcurrencyLimitedError):
            driver.send(transport, "GET", url)
    origin.limiter._release()
    throttle = origin.throttle
    assert throttle._core.counts(throttle._clock.now()) == (1, 1)
    assert len(http_server.received("/ok")) == 1


def test_breaker_refusals_leave_the_origins_throttle_seeing_the_outage(
    driver: Driver, http_server: Any
) -> None:
    """With ``breaker=`` and ``throttle=`` against an origin answering 503, the breaker's
    refusals are no accepts: the throttle still sees an origin that accepts nothing (the audit
    saw 59 refusals counted as accepts and a probability of 0.0)."""
    http_server.script("/down", [Reply(503)])
    breaker = CircuitBreaker(minimum_calls=2, open_for=60.0)
    transport = driver.transport(retry=None, breaker=breaker, throttle=throttle_())
    url = f"{http_server.url}/down"
    refused = 0
    for _ in range(60):
        try:
            assert driver.send(transport, "GET", url).status_code == 503
        except (CircuitOpenError, ThrottledError):
            refused += 1
    throttle = origin_of(transport, url).throttle
    requests, accepts = throttle._core.counts(throttle._clock.now())
    assert accepts == 0 and refused == 58 and len(http_server.received("/down")) == 2
    assert requests == 2 + throttle.refusals  # what was sent, and what it refused itself
    assert throttle.probability >= 2 / 3


def throttle_() -> AdaptiveThrottle:
    return AdaptiveThrottle(rng=random.Random(3))
