"""The transports' smaller edges: the time left they send, waits that a server or a breaker
asks for, 409 "in progress", and the one error a spent deadline raises."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from resilience import (
    Backoff,
    CircuitBreaker,
    Deadline,
    DeadlineExceededError,
    Retry,
)
from resilience.http import DEADLINE_HEADER, HTTPDeadlineExceededError
from resilience.testing import FakeClock
from tests.http_server import Driver, Drop, Reply, Stall

NO_JITTER = Backoff(initial=0.5, maximum=4.0, jitter="none")


def sent_time_left(server: Any, path: str) -> list[int]:
    return [int(r.headers[DEADLINE_HEADER.lower()]) for r in server.received(path)]


def test_the_time_left_header_is_this_attempts_bound(driver: Driver, http_server: Any) -> None:
    """``Request-Timeout-Ms`` carries min(time left, attempt timeout): the attempt's timeout
    when it is shorter than the deadline's remainder, the remainder otherwise."""
    clock = FakeClock()
    transport = driver.transport(attempt_timeout=0.5, deadline=5.0, clock=clock)
    driver.send(transport, "GET", f"{http_server.url}/short")
    assert sent_time_left(http_server, "/short") == [500]

    transport = driver.transport(attempt_timeout=10.0, deadline=0.25, clock=clock)
    driver.send(transport, "GET", f"{http_server.url}/left")
    assert sent_time_left(http_server, "/left") == [250]


def test_the_time_left_header_is_no_more_than_the_requests_own_timeout(
    driver: Driver, http_server: Any
) -> None:
    """With no options, the attempt is bounded by httpx's default 5 s timeout before the
    standard 10 s attempt timeout: the header says 5000, not 10000; a request's own shorter
    read timeout is what it sends, a longer one changes nothing."""
    clock = FakeClock()
    driver.send(driver.transport(clock=clock), "GET", f"{http_server.url}/default")
    assert sent_time_left(http_server, "/default") == [5000]

    transport = driver.transport(clock=clock)
    driver.send(transport, "GET", f"{http_server.url}/own", timeout=httpx.Timeout(30.0, read=2.5))
    driver.send(transport, "GET", f"{http_server.url}/own", timeout=60.0)
    driver.send(transport, "GET", f"{http_server.url}/own", timeout=None)
    assert sent_time_left(http_server, "/own") == [2500, 10000, 10000]


def test_retry_after_jitter_never_passes_retry_after_max(driver: Driver, http_server: Any) -> None:
    """A server asking ``Retry-After: 10000`` of a call with no deadline is waited on for
    ``retry_after_max`` exactly: the jitter goes on before the cap, never past it; a wait
    asked just under the cap is jittered up to the cap at most, never below what was asked."""
    clock = FakeClock()
    script = [Reply(503, headers={"Retry-After": "10000"}), Reply(200)]
    http_server.script(
        "/r", script * 5 + [Reply(503, headers={"Retry-After": "115"}), Reply(200)] * 20
    )
    transport = driver.transport(
        retry=Retry(2, backoff=Backoff(initial=0.001)), breaker=None, deadline=None, clock=clock
    )
    for _ in range(25):
        assert driver.send(transport, "GET", f"{http_server.url}/r").status_code == 200
    assert clock.sleeps[:5] == [120.0] * 5
    assert all(115.0 <= slept <= 120.0 for slept in clock.sleeps[5:])
    assert 120.0 in clock.sleeps[5:] and len(set(clock.sleeps[5:])) > 1


def test_retry_after_waits_at_least_as_asked_with_a_little_jitter(
    driver: Driver, http_server: Any
) -> None:
    """Twenty calls told ``Retry-After: 1`` each wait in [1.0, 1.1] s, and not all alike: the
    clients a server told "1" do not come back in lockstep."""
    clock = FakeClock()
    http_server.script("/r", [Reply(503, headers={"Retry-After": "1"}), Reply(200)] * 20)
    transport = driver.transport(
        retry=Retry(2, backoff=Backoff(initial=0.001)), breaker=None, clock=clock
    )
    for _ in range(20):
        assert driver.send(transport, "GET", f"{http_server.url}/r").status_code == 200
    assert len(clock.sleeps) == 20
    assert all(1.0 <= slept <= 1.1 for slept in clock.sleeps)
    assert len(set(clock.sleeps)) > 1


def test_a_retry_stops_when_the_breaker_stays_open_past_the_deadline(
    driver: Driver, http_server: Any
) -> None:
    """The attempt that opens the origin's breaker (open 30 s) in a call with 5 s left ends the
    call at once with that attempt's answer: no wait, no CircuitOpenError."""
    clock = FakeClock()
    http_server.script("/r", [Reply(503)])
    transport = driver.transport(
        retry=Retry(4, backoff=NO_JITTER),
        breaker=CircuitBreaker(minimum_calls=2, open_for=30.0),
        deadline=5.0,
        clock=clock,
    )
    response = driver.send(transport, "GET", f"{http_server.url}/r")
    assert response.status_code == 503
    assert len(http_server.received("/r")) == 2
    assert clock.sleeps == [0.5]  # the one backoff before the attempt that opened it


def test_a_retry_waits_out_a_breaker_that_reopens_in_time(driver: Driver, http_server: Any) -> None:
    """When the breaker's open time plus one attempt timeout fits in the time left, the retry
    waits until it admits its trial, and the trial is the retry."""
    clock = FakeClock()
    http_server.script("/r", [Reply(503), Reply(503), Reply(200)])
    transport = driver.transport(
        retry=Retry(4, backoff=NO_JITTER),
        breaker=CircuitBreaker(minimum_calls=2, open_for=2.0),
        attempt_timeout=5.0,
        deadline=10.0,
        clock=clock,
    )
    assert driver.send(transport, "GET", f"{http_server.url}/r").status_code == 200
    assert clock.sleeps == [0.5, 2.001]  # the open time, and a millisecond past it


def test_a_call_waits_for_its_breaker_at_most_once(driver: Driver, http_server: Any) -> None:
    """In an outage the call whose attempt opened the breaker waits once for its trial; the
    failed trial reopens the breaker and the call ends with that 503, not a second wait."""
    clock = FakeClock()
    http_server.script("/r", [Reply(503)])
    transport = driver.transport(
        retry=Retry(4, backoff=NO_JITTER),
        breaker=CircuitBreaker(minimum_calls=2, open_for=5.0),
        deadline=30.0,
        clock=clock,
    )
    assert driver.send(transport, "GET", f"{http_server.url}/r").status_code == 503
    assert clock.sleeps == [0.5, 5.001]
    assert len(http_server.received("/r")) == 3  # the second is the trial

    http_server.script("/e", [Drop()])  # the same for errors; the note says why it stopped
    transport = driver.transport(
        retry=Retry(4, backoff=NO_JITTER),
        breaker=CircuitBreaker(minimum_calls=2, open_for=5.0),
        deadline=30.0,
        clock=clock,
    )
    with pytest.raises(httpx.TransportError) as caught:
        driver.send(transport, "GET", f"{http_server.url}/e")
    assert clock.sleeps[2:] == [0.5, 5.001]
    assert len(http_server.received("/e")) == 3
    assert "already waited for it once" in "".join(caught.value.__notes__)


def test_a_call_does_not_wait_for_a_breaker_when_its_trial_would_not_fit(
    driver: Driver, http_server: Any
) -> None:
    """With 9.5 s left, a breaker open 5 s and a 6 s attempt timeout, the wait and the trial
    do not fit: the call ends at once with the answer that opened the breaker."""
    clock = FakeClock()
    http_server.script("/r", [Reply(503)])
    transport = driver.transport(
        retry=Retry(4, backoff=NO_JITTER),
        breaker=CircuitBreaker(minimum_calls=2, open_for=5.0),
        attempt_timeout=6.0,
        deadline=10.0,
        clock=clock,
    )
    assert driver.send(transport, "GET", f"{http_server.url}/r").status_code == 503
    assert clock.sleeps == [0.5]
    assert len(http_server.received("/r")) == 2


def test_a_409_in_progress_is_waited_on_without_spending_attempts(
    driver: Driver, http_server: Any
) -> None:
    """A keyed POST to a key-honouring origin answered 409 (its original still runs) asks
    again after growing waits — the server's Retry-After when given — within one attempt, until
    the answer comes; a single-attempt retry policy is enough."""
    clock = FakeClock()
    http_server.script(
        "/charges",
        [Reply(409), Reply(409), Reply(409, headers={"Retry-After": "3"}), Reply(201)],
    )
    transport = driver.transport(
        retry=Retry(1, backoff=NO_JITTER), origins_honour_keys=True, deadline=30.0, clock=clock
    )
    response = driver.send(transport, "POST", f"{http_server.url}/charges", content=b"{}")
    assert response.status_code == 201
    keys = {r.headers["idempotency-key"] for r in http_server.received("/charges")}
    assert len(http_server.received("/charges")) == 4 and len(keys) == 1
    first, second, asked = clock.sleeps
    assert 0.25 <= first <= 0.5 and 0.5 <= second <= 1.0  # the backoff's ceilings, jittered
    assert 3.0 <= asked <= 3.3


def test_a_409_in_progress_is_returned_when_the_deadline_cannot_wait(
    driver: Driver, http_server: Any
) -> None:
    """When the next wait would pass the deadline the 409 goes back to the caller."""
    clock = FakeClock()
    http_server.script("/charges", [Reply(409, headers={"Retry-After": "10"}), Reply(201)])
    transport = driver.transport(
        retry=Retry(3, backoff=NO_JITTER), origins_honour_keys=True, deadline=5.0, clock=clock
    )
    response = driver.send(transport, "POST", f"{http_server.url}/charges", content=b"{}")
    assert response.status_code == 409
    assert clock.sleeps == [] and len(http_server.received("/charges")) == 1


def _spent(caught: BaseException) -> None:
    assert isinstance(caught, HTTPDeadlineExceededError)
    assert isinstance(caught, DeadlineExceededError) and isinstance(caught, TimeoutError)
    assert isinstance(caught, httpx.TimeoutException)  # bare-httpx handlers still catch it
    assert isinstance(caught.__cause__, httpx.TimeoutException)


def test_a_spent_deadline_raises_one_error(driver: Driver, http_server: Any) -> None:
    """A call whose own deadline runs out in an attempt raises DeadlineExceededError (also a
    TimeoutError and an httpx.TimeoutException) with httpx's timeout as its cause."""
    http_server.script("/stall", [Stall()])
    transport = driver.transport(deadline=0.3, retry=Retry(3, backoff=NO_JITTER))
    with pytest.raises(DeadlineExceededError) as caught:
        driver.send(transport, "GET", f"{http_server.url}/stall")
    _spent(caught.value)
    assert len(http_server.received("/stall")) == 1


def test_an_enclosing_deadline_that_runs_out_raises_the_same_error(
    driver: Driver, http_server: Any
) -> None:
    """Inside a caller's ``Deadline`` block (the transport's own deadline off), the call that
    runs out of the caller's time raises the same one error."""
    http_server.script("/stall", [Stall()])
    transport = driver.transport(deadline=None, retry=Retry(3, backoff=NO_JITTER))
    if driver.colour == "sync":
        with pytest.raises(DeadlineExceededError) as caught, Deadline(0.3):
            driver.send(transport, "GET", f"{http_server.url}/stall")
        _spent(caught.value)
    else:

        async def scenario() -> None:
            async with httpx.AsyncClient(transport=transport) as client:
                # the sync form: published, not enforced by a timer; the transport obeys it
                with pytest.raises(DeadlineExceededError) as caught, Deadline(0.3):
                    await client.get(f"{http_server.url}/stall")
                _spent(caught.value)

        asyncio.run(scenario())
    assert len(http_server.received("/stall")) == 1


def test_a_call_started_with_no_time_left_sends_nothing_and_admits_nothing(
    driver: Driver, http_server: Any
) -> None:
    """Inside a caller's deadline that has already run out, the call raises the one deadline
    error before any request leaves and before the breaker counts anything."""
    clock = FakeClock()
    transport = driver.transport(deadline=None, clock=clock)
    driver.send(transport, "GET", f"{http_server.url}/r")  # builds the origin's policies
    breaker = transport.breaker_for(http_server.url)
    before = breaker.metrics
    with Deadline(1.0, clock=clock):
        clock.advance(1.0)
        with pytest.raises(HTTPDeadlineExceededError):
            driver.send(transport, "GET", f"{http_server.url}/r")
    after = breaker.metrics
    assert len(http_server.received("/r")) == 1
    assert (after.total_successes, after.total_failures) == (
        before.total_successes,
        before.total_failures,
    )
