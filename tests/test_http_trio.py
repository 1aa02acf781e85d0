"""AsyncResilientTransport under trio, against a real server on 127.0.0.1: retries wait, hedges
race and cancellation frees every permit, as under asyncio."""

from __future__ import annotations

import time
from typing import Any

import httpx
import trio

from resilience import Backoff, Bulkhead, CircuitBreaker, Hedge, Retry
from resilience._clock import SystemClock
from resilience.http import AsyncResilientTransport
from tests.http_server import Reply, Stall


class CountingClock(SystemClock):
    """The system clock, counting the async waits taken on it."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def sleep_async(self, seconds: float) -> None:
        self.waits.append(seconds)
        await super().sleep_async(seconds)


def get(transport: AsyncResilientTransport, url: str) -> httpx.Response:
    """One GET through ``transport``, run by trio."""

    async def scenario() -> httpx.Response:
        async with httpx.AsyncClient(transport=transport) as client:
            response = await client.get(url)
            await response.aread()
            return response

    return trio.run(scenario)


def test_a_get_answered_503_503_200_returns_200_after_two_waits(http_server: Any) -> None:
    """Under trio a retried GET waits (trio's own sleep, on the real clock) between attempts
    and ends with the 200."""
    http_server.script("/flaky", [Reply(503), Reply(503), Reply(200, body=b"ok")])
    clock = CountingClock()
    backoff = Backoff(initial=0.01, maximum=0.01, jitter="none")
    transport = AsyncResilientTransport(retry=Retry(3, backoff=backoff, clock=clock), clock=clock)
    response = get(transport, f"{http_server.url}/flaky")
    assert (response.status_code, response.content) == (200, b"ok")
    assert clock.waits == [0.01, 0.01]
    assert len(http_server.received("/flaky")) == 3


def test_hedging_cuts_a_slow_tail(http_server: Any) -> None:
    """Under trio a GET whose first copy is slow is answered by the hedge sent after the delay,
    long before the slow copy would have answered."""
    http_server.script("/tail", [Reply(200, body=b"slow", delay=2.0), Reply(200, body=b"fast")])
    transport = AsyncResilientTransport(retry=None, hedge=Hedge(0.05), deadline=5.0)
    started = time.monotonic()
    response = get(transport, f"{http_server.url}/tail")
    assert response.content == b"fast"
    assert time.monotonic() - started < 2.0
    assert len(http_server.received("/tail")) == 2


def test_cancelling_a_hedged_call_cancels_every_copy(http_server: Any) -> None:
    """Cancelling a hedged call under trio cancels both copies in flight and frees their
    bulkhead permits and breaker slots."""
    http_server.script("/stall", [Stall()])
    bulkhead = Bulkhead(4)
    transport = AsyncResilientTransport(
        retry=None, hedge=Hedge(0.01), bulkhead=bulkhead, breaker=CircuitBreaker(half_open_calls=1)
    )

    async def scenario() -> bool:
        async with httpx.AsyncClient(transport=transport) as client:
            with trio.CancelScope() as caller:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(client.get, f"{http_server.url}/stall")
                    # Wait (bounded) on the server's condition until both copies arrived.
                    await trio.to_thread.run_sync(http_server.wait_received, 2, "/stall")
                    assert transport.bulkhead_for(http_server.url).active == 2
                    caller.cancel()
            return caller.cancelled_caught

    assert trio.run(scenario) is True
    assert len(http_server.received("/stall")) == 2
    assert transport.bulkhead_for(http_server.url).active == 0
    assert transport.breaker_for(http_server.url).metrics.total_interrupted == 2
