"""ResilientTransport and AsyncResilientTransport against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from resilience import (
    Backoff,
    Bulkhead,
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    DeadlineExceededError,
    Hedge,
    Retry,
    RetryBudget,
)
from resilience.http import DEADLINE_HEADER, AsyncResilientTransport, ResilientTransport
from resilience.testing import FakeClock
from tests.http_server import Driver, Drop, Reply, Stall, dead_origin

FAST = Backoff(initial=0.001, maximum=0.005)


def keys_seen(server: Any, path: str) -> list[str | None]:
    return [received.headers.get("idempotency-key") for received in server.received(path)]


def test_get_is_retried_through_transient_statuses(driver: Driver, http_server: Any) -> None:
    """A GET answered 503, 502, 200 returns the 200 after three attempts."""
    http_server.script("/r", [Reply(503), Reply(502), Reply(200, body=b"done")])
    transport = driver.transport(retry=Retry(4, backoff=FAST))
    response = driver.send(transport, "GET", f"{http_server.url}/r")
    assert response.status_code == 200
    assert response.content == b"done"
    assert len(http_server.received("/r")) == 3


def test_last_response_is_returned_when_attempts_run_out(driver: Driver, http_server: Any) -> None:
    """When attempts run out the caller gets the last response, as httpx would return it."""
    http_server.script("/r", [Reply(503, body=b"busy")])
    transport = driver.transport(retry=Retry(3, backoff=FAST))
    response = driver.send(transport, "GET", f"{http_server.url}/r")
    assert response.status_code == 503
    assert response.content == b"busy"
    assert len(http_server.received("/r")) == 3


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422, 501])
def test_final_statuses_are_not_retried(driver: Driver, http_server: Any, status: int) -> None:
    """Client errors and 501 are returned after one attempt."""
    http_server.script("/r", [Reply(status)])
    response = driver.send(
        driver.transport(retry=Retry(3, backoff=FAST)), "GET", f"{http_server.url}/r"
    )
    assert response.status_code == status
    assert len(http_server.received("/r")) == 1


def test_keyless_post_after_read_timeout_reaches_server_once(
    driver: Driver, http_server: Any
) -> None:
    """A POST without a key is never resent after a ReadTimeout: it may have been processed."""
    http_server.script("/charges", [Stall()])
    transport = driver.transport(
        retry=Retry(4, backoff=FAST), idempotency_keys=False, attempt_timeout=0.3
    )
    with pytest.raises(httpx.ReadTimeout):
        driver.send(transport, "POST", f"{http_server.url}/charges", content=b"{}")
    assert len(http_server.received("/charges")) == 1


def test_keyless_post_after_5xx_is_not_resent(driver: Driver, http_server: Any) -> None:
    """A keyless POST that got a 503 is returned as is: the server saw it."""
    http_server.script("/charges", [Reply(503), Reply(200)])
    transport = driver.transport(retry=Retry(4, backoff=FAST), idempotency_keys=False)
    response = driver.send(transport, "POST", f"{http_server.url}/charges", content=b"{}")
    assert response.status_code == 503
    assert len(http_server.received("/charges")) == 1


def test_keyed_post_is_resent_with_byte_identical_keys(driver: Driver, http_server: Any) -> None:
    """A POST to an origin declared key-honouring gets one Idempotency-Key, sent unchanged on
    each of its 3 attempts, after a dropped connection and a 503."""
    http_server.script("/charges", [Drop(), Reply(503), Reply(201)])
    transport = driver.transport(retry=Retry(4, backoff=FAST), origins_honour_keys=True)
    response = driver.send(transport, "POST", f"{http_server.url}/charges", json={"amount": 5})
    assert response.status_code == 201
    keys = keys_seen(http_server, "/charges")
    assert len(keys) == 3
    assert keys[0] is not None
    assert keys[0].startswith('"')
    assert keys[0].endswith('"')
    assert len(set(keys)) == 1


def test_each_call_gets_a_fresh_key(driver: Driver, http_server: Any) -> None:
    """Two POST calls carry two different keys; PATCH gets one; GET, PUT and DELETE get none."""
    transport = driver.transport(retry=Retry(2, backoff=FAST), key_style="token")
    for method in ("POST", "POST", "PATCH", "GET", "PUT", "DELETE"):
        driver.send(transport, method, f"{http_server.url}/k")
    keys = keys_seen(http_server, "/k")
    assert keys[3:] == [None, None, None]
    assert len(set(keys[:3])) == 3
    assert all(key is not None and '"' not in key for key in keys[:3])


def test_a_callers_own_key_is_never_replaced(driver: Driver, http_server: Any) -> None:
    """A key the caller set is sent as is on every attempt."""
    http_server.script("/charges", [Reply(409), Reply(200)])
    transport = driver.transport(retry=Retry(3, backoff=FAST), origins_honour_keys=True)
    response = driver.send(
        transport, "POST", f"{http_server.url}/charges", headers={"Idempotency-Key": "order-17"}
    )
    assert response.status_code == 200
    assert keys_seen(http_server, "/charges") == ["order-17", "order-17"]


def test_connect_errors_are_retried_even_for_a_keyless_post(driver: Driver) -> None:
    """A refused connection proves nothing was sent, so even a keyless POST is retried."""
    clock = FakeClock()
    transport = driver.transport(
        retry=Retry(3, backoff=Backoff(initial=0.5, jitter="none"), clock=clock),
        idempotency_keys=False,
        clock=clock,
    )
    with pytest.raises(httpx.ConnectError) as caught:
        driver.send(transport, "POST", f"{dead_origin()}/charges", content=b"{}")
    assert clock.sleeps == [0.5, 1.0]
    assert "attempt 3 of 3" in "".join(caught.value.__notes__)


def test_retry_after_seconds_is_waited_on_the_clock(driver: Driver, http_server: Any) -> None:
    """``Retry-After: 2`` makes the next attempt wait at least 2 s of (fake) clock, and at most
    10 % more (the jitter that keeps clients told the same value apart)."""
    clock = FakeClock()
    http_server.script("/r", [Reply(503, headers={"Retry-After": "2"}), Reply(200)])
    transport = driver.transport(retry=Retry(3, backoff=FAST, clock=clock), clock=clock)
    response = driver.send(transport, "GET", f"{http_server.url}/r")
    assert response.status_code == 200
    (slept,) = clock.sleeps
    assert 2.0 <= slept <= 2.2


def test_malformed_retry_after_falls_back_to_backoff(driver: Driver, http_server: Any) -> None:
    """A garbled Retry-After never raises; the backoff delay is used instead."""
    clock = FakeClock()
    http_server.script("/r", [Reply(503, headers={"Retry-After": "soon-ish"}), Reply(200)])
    transport = driver.transport(
        retry=Retry(3, backoff=Backoff(initial=0.25, jitter="none"), clock=clock), clock=clock
    )
    assert driver.send(transport, "GET", f"{http_server.url}/r").status_code == 200
    assert clock.sleeps == [0.25]


def test_retry_after_past_the_deadline_returns_the_response_at_once(
    driver: Driver, http_server: Any
) -> None:
    """A Retry-After reaching past the deadline ends the call with that response, no sleep."""
    clock = FakeClock()
    http_server.script("/r", [Reply(503, headers={"Retry-After": "30"}), Reply(200)])
    transport = driver.transport(retry=Retry(3, clock=clock), deadline=5.0, clock=clock)
    response = driver.send(transport, "GET", f"{http_server.url}/r")
    assert response.status_code == 503
    assert clock.sleeps == []
    assert len(http_server.received("/r")) == 1


def test_retry_after_is_capped(driver: Driver, http_server: Any) -> None:
    """Retry-After values beyond ``retry_after_max`` wait only the cap."""
    clock = FakeClock()
    http_server.script("/r", [Reply(429, headers={"Retry-After": "86400"}), Reply(200)])
    transport = driver.transport(
        retry=Retry(2, backoff=FAST, clock=clock), clock=clock, retry_after_max=7.0
    )
    assert driver.send(transport, "GET", f"{http_server.url}/r").status_code == 200
    (slept,) = clock.sleeps
    assert 7.0 <= slept <= 7.7


def test_deadline_bounds_attempts_and_elapsed_time(driver: Driver, http_server: Any) -> None:
    """With a 1 s deadline and a 0.4 s server: at most 3 attempts, and about 1 s elapsed."""
    http_server.script("/slow", [Reply(503, delay=0.4)])
    transport = driver.transport(retry=Retry(10, backoff=FAST), deadline=1.0)
    started = time.monotonic()
    try:
        response = driver.send(transport, "GET", f"{http_server.url}/slow")
    except (httpx.TimeoutException, DeadlineExceededError):
        pass  # the last attempt ran out of time (its httpx timeouts were capped by the time left)
    else:
        assert response.status_code == 503
    elapsed = time.monotonic() - started
    assert len(http_server.received("/slow")) <= 3
    assert elapsed <= 1.0 + 0.5  # epsilon: scheduling on a loaded 2-core machine


def test_time_left_is_sent_downstream(driver: Driver, http_server: Any) -> None:
    """Each attempt carries the time left, in milliseconds, in ``Request-Timeout-Ms``."""
    clock = FakeClock()
    http_server.script("/r", [Reply(503, headers={"Retry-After": "1"}), Reply(200)])
    transport = driver.transport(retry=Retry(2, clock=clock), deadline=5.0, clock=clock)
    driver.send(transport, "GET", f"{http_server.url}/r")
    sent = [int(r.headers[DEADLINE_HEADER.lower()]) for r in http_server.received("/r")]
    assert sent[0] == 5000
    assert sent[1] == int((5.0 - clock.sleeps[0]) * 1000)  # after the Retry-After wait


def test_no_deadline_header_without_a_deadline(driver: Driver, http_server: Any) -> None:
    """Without a deadline or an attempt timeout, no time-left header is sent."""
    driver.send(
        driver.transport(deadline=None, attempt_timeout=None), "GET", f"{http_server.url}/r"
    )
    assert DEADLINE_HEADER.lower() not in http_server.received("/r")[0].headers


def test_time_left_header_leaves_the_request_after_the_call(
    driver: Driver, http_server: Any
) -> None:
    """The time left is true for one attempt and the Idempotency-Key for one call: both go out
    on the wire, then leave the request object the caller gets back."""
    clock = FakeClock()
    http_server.script("/r", [Reply(503), Reply(200)])
    transport = driver.transport(
        retry=Retry(2, backoff=FAST, clock=clock), deadline=5.0, origins_honour_keys=True
    )
    response = driver.send(transport, "POST", f"{http_server.url}/r", content=b"{}")
    assert [DEADLINE_HEADER.lower() in r.headers for r in http_server.received("/r")] == [
        True,
        True,
    ]
    assert DEADLINE_HEADER not in response.request.headers
    assert "Idempotency-Key" not in response.request.headers


def test_a_callers_own_time_left_header_is_replaced_then_put_back(
    driver: Driver, http_server: Any
) -> None:
    """A caller's own ``Request-Timeout-Ms`` goes out as the time this call has left (it ends
    sooner) on every attempt, and is back, as the caller wrote it, once the call returns —
    also when the call ends in an error."""
    clock = FakeClock()
    http_server.script("/r", [Reply(503), Reply(200)])
    transport = driver.transport(retry=Retry(2, backoff=FAST, clock=clock), deadline=5.0)
    response = driver.send(
        transport, "GET", f"{http_server.url}/r", headers={DEADLINE_HEADER: "60000"}
    )
    sent = [int(r.headers[DEADLINE_HEADER.lower()]) for r in http_server.received("/r")]
    assert sent[0] == 5000 and 4990 <= sent[1] <= 5000  # FAST backoff: a few fake ms
    assert response.request.headers.get_list(DEADLINE_HEADER) == ["60000"]

    http_server.script("/gone", [Drop()])
    with pytest.raises(httpx.TransportError) as raised:
        driver.send(
            driver.transport(retry=None, deadline=5.0, clock=clock),
            "GET",
            f"{http_server.url}/gone",
            headers={DEADLINE_HEADER: "7"},
        )
    assert len(http_server.received("/gone")) == 1
    assert raised.value.request.headers.get_list(DEADLINE_HEADER) == ["7"]

    # One transport inside another: each puts back what it replaced.
    nested = driver.transport(
        driver.transport(retry=None, deadline=2.0, clock=FakeClock()), retry=None, deadline=5.0
    )
    response = driver.send(nested, "GET", f"{http_server.url}/n", headers={DEADLINE_HEADER: "9"})
    assert http_server.received("/n")[0].headers[DEADLINE_HEADER.lower()] == "2000"
    assert response.request.headers.get_list(DEADLINE_HEADER) == ["9"]


def test_dead_host_opens_its_breaker_while_a_healthy_host_answers(
    driver: Driver, http_server: Any
) -> None:
    """Breakers are per origin: a dead host's opens, the healthy host's stays closed."""
    transport = driver.transport(
        retry=None, breaker=CircuitBreaker("api", minimum_calls=3, failure_rate=0.5)
    )
    dead = f"{dead_origin()}/x"
    for _ in range(3):
        with pytest.raises(httpx.ConnectError):
            driver.send(transport, "GET", dead)
    with pytest.raises(CircuitOpenError) as rejected:
        driver.send(transport, "GET", dead)
    assert rejected.value.retry_after > 0
    assert driver.send(transport, "GET", f"{http_server.url}/x").status_code == 200
    assert transport.breaker_for(http_server.url).state is CircuitState.CLOSED
    assert transport.breaker_for(dead).state is CircuitState.OPEN


def test_4xx_do_not_count_against_the_breaker(driver: Driver, http_server: Any) -> None:
    """Client errors are the caller's problem: the breaker stays closed."""
    http_server.script("/missing", [Reply(404)])
    transport = driver.transport(retry=None, breaker=CircuitBreaker(minimum_calls=2))
    for _ in range(5):
        assert driver.send(transport, "GET", f"{http_server.url}/missing").status_code == 404
    assert transport.breaker_for(http_server.url).state is CircuitState.CLOSED


def test_5xx_count_against_the_breaker(driver: Driver, http_server: Any) -> None:
    """Server errors open the breaker; the open breaker does not touch the network."""
    http_server.script("/r", [Reply(500)])
    transport = driver.transport(retry=None, breaker=CircuitBreaker(minimum_calls=2))
    for _ in range(2):
        driver.send(transport, "GET", f"{http_server.url}/r")
    with pytest.raises(CircuitOpenError):
        driver.send(transport, "GET", f"{http_server.url}/r")
    assert len(http_server.received("/r")) == 2


def test_budgets_are_kept_per_origin(driver: Driver, http_server: Any) -> None:
    """A template budget is copied per origin: spending one host's leaves another's intact."""
    budget = RetryBudget(ratio=0.0, min_retries_per_second=0.1, window=10.0)  # one retry
    transport = driver.transport(retry=Retry(3, backoff=FAST, budget=budget))
    http_server.script("/r", [Reply(503)])
    driver.send(transport, "GET", f"{http_server.url}/r")
    assert len(http_server.received("/r")) == 2  # the first attempt and the one retry
    with pytest.raises(httpx.ConnectError) as caught:
        driver.send(transport, "GET", f"{dead_origin()}/r")
    assert "attempt 2 of 3" in "".join(caught.value.__notes__)


def test_one_shot_body_is_not_resent(driver: Driver, http_server: Any) -> None:
    """A streamed (one-shot) body is not resent once sent, and the error says why."""
    http_server.script("/upload", [Drop(), Reply(200)])
    transport = driver.transport(retry=Retry(3, backoff=FAST))
    if driver.colour == "sync":
        body: Any = iter([b"chunk-1", b"chunk-2"])
    else:

        async def chunks() -> Any:
            yield b"chunk-1"
            yield b"chunk-2"

        body = chunks()
    with pytest.raises(httpx.TransportError) as caught:
        driver.send(transport, "PUT", f"{http_server.url}/upload", content=body)
    assert "one-shot" in "".join(caught.value.__notes__)
    assert len(http_server.received("/upload")) == 1


def test_hedging_cuts_a_slow_tail(driver: Driver, http_server: Any) -> None:
    """A GET whose first copy is slow is answered by the hedge sent after the delay; both
    copies carry the time left, which leaves the request once the call is over."""
    http_server.script("/tail", [Reply(200, body=b"slow", delay=2.0), Reply(200, body=b"fast")])
    transport = driver.transport(retry=None, hedge=Hedge(0.05), deadline=5.0)
    started = time.monotonic()
    response = driver.send(transport, "GET", f"{http_server.url}/tail")
    assert response.content == b"fast"
    assert time.monotonic() - started < 2.0
    received = http_server.received("/tail")
    assert len(received) == 2
    assert all(0 < int(r.headers[DEADLINE_HEADER.lower()]) <= 5000 for r in received)
    assert DEADLINE_HEADER not in response.request.headers


def test_post_is_never_hedged(driver: Driver, http_server: Any) -> None:
    """Hedging applies to idempotent requests only."""
    http_server.script("/charges", [Reply(200, delay=0.3)])
    transport = driver.transport(retry=None, hedge=Hedge(0.01))
    driver.send(transport, "POST", f"{http_server.url}/charges")
    assert len(http_server.received("/charges")) == 1


class GateClock(FakeClock):
    """A fake clock whose async sleeps block until cancelled, announcing that they started."""

    def __init__(self) -> None:
        super().__init__()
        self.sleeping = asyncio.Event()

    async def sleep_async(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.sleeping.set()
        await asyncio.get_running_loop().create_future()  # until cancelled


def test_cancelling_during_backoff_stops_attempts_and_releases_permits(
    http_server: Any,
) -> None:
    """Cancelling the task during a backoff sleep sends no more attempts and frees every permit."""
    clock = GateClock()
    http_server.script("/r", [Reply(503)])
    transport = AsyncResilientTransport(
        retry=Retry(5, clock=clock), bulkhead=Bulkhead(1), breaker=CircuitBreaker(), clock=clock
    )

    async def scenario() -> None:
        async with httpx.AsyncClient(transport=transport) as client:
            task = asyncio.create_task(client.get(f"{http_server.url}/r"))
            await asyncio.wait_for(clock.sleeping.wait(), 5)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(scenario())
    assert len(http_server.received("/r")) == 1
    assert transport.bulkhead_for(http_server.url).active == 0
    assert transport.breaker_for(http_server.url).metrics.total_interrupted == 0


def test_cancelling_a_hedged_call_cancels_every_copy(http_server: Any) -> None:
    """Cancelling a hedged call cancels both copies in flight and frees their permits."""
    http_server.script("/stall", [Stall()])
    bulkhead = Bulkhead(4)
    transport = AsyncResilientTransport(
        retry=None, hedge=Hedge(0.01), bulkhead=bulkhead, breaker=CircuitBreaker(half_open_calls=1)
    )

    async def scenario() -> None:
        async with httpx.AsyncClient(transport=transport) as client:
            task = asyncio.create_task(client.get(f"{http_server.url}/stall"))
            # Wait (bounded) on the server's condition until both copies have arrived.
            await asyncio.to_thread(http_server.wait_received, 2, "/stall")
            assert transport.bulkhead_for(http_server.url).active == 2
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(scenario())
    assert len(http_server.received("/stall")) == 2
    assert transport.bulkhead_for(http_server.url).active == 0
    assert transport.breaker_for(http_server.url).metrics.total_interrupted == 2


def test_resilient_client_builds_a_configured_client(http_server: Any) -> None:
    """``resilient_client`` splits transport options from client options."""
    from resilience.http import resilient_async_client, resilient_client

    http_server.script("/r", [Reply(503), Reply(200, body=b"ok")])
    with resilient_client(
        base_url=http_server.url, retry=Retry(2, backoff=FAST), headers={"X-App": "shop"}
    ) as client:
        assert isinstance(client._transport, ResilientTransport)
        response = client.get("/r")
    assert (response.status_code, response.content) == (200, b"ok")
    assert http_server.received("/r")[0].headers["x-app"] == "shop"

    async def go() -> int:
        async with resilient_async_client(base_url=http_server.url, deadline=5.0) as client:
            return (await client.get("/other")).status_code

    assert asyncio.run(go()) == 200


def test_header_writer_falls_back_to_the_public_api() -> None:
    """The fast header write replaces an existing value, and works without httpx internals."""
    from resilience.http._wire import set_header as _set_header

    headers = httpx.Headers({"Request-Timeout-Ms": "9"})
    _set_header(headers, b"Request-Timeout-Ms", "5")
    assert headers.get_list("request-timeout-ms") == ["5"]

    class Plain(dict[str, str]):
        pass

    plain = Plain()
    _set_header(plain, b"Request-Timeout-Ms", "7")  # type: ignore[arg-type]
    assert plain == {"Request-Timeout-Ms": "7"}


def test_failed_attempts_return_their_connection_to_the_pool(
    driver: Driver, http_server: Any
) -> None:
    """Responses that will be retried are read and closed: every attempt reuses one connection."""
    http_server.script("/r", [Reply(503, body=b"x" * 10_000), Reply(502), Reply(200)])
    transport = driver.transport(retry=Retry(3, backoff=FAST))
    assert driver.send(transport, "GET", f"{http_server.url}/r").status_code == 200
    connections = {received.connection for received in http_server.received("/r")}
    assert len(connections) == 1


def test_an_enclosing_deadline_that_ends_sooner_bounds_the_call(
    driver: Driver, http_server: Any
) -> None:
    """Inside a caller's 1 s Deadline, a transport with a 5 s deadline sends (and obeys) the
    time the caller has left; a caller with no time left gets DeadlineExceededError before any
    request leaves."""
    from resilience._context import enter_deadline, exit_deadline

    clock = FakeClock()
    http_server.script("/r", [Reply(200)])
    transport = driver.transport(deadline=5.0, clock=clock)
    token, _ = enter_deadline(1.0, clock)
    try:
        response = driver.send(transport, "GET", f"{http_server.url}/r")
        assert DEADLINE_HEADER not in response.request.headers  # sent, then taken back
        clock.advance(1.0)
        with pytest.raises(DeadlineExceededError):
            driver.send(transport, "GET", f"{http_server.url}/r")
    finally:
        exit_deadline(token)
    sent = [int(r.headers[DEADLINE_HEADER.lower()]) for r in http_server.received("/r")]
    assert sent == [1000]
