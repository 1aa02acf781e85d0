"""FaultInjectingTransport: scheduled and seeded faults, outages and latency, sync and async."""

from __future__ import annotations

import asyncio
import copy
import math
import pickle
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from resilience.testing import (
    AsyncFaultInjectingTransport,
    FakeClock,
    Fault,
    FaultInjectingTransport,
)

URL = "http://test.invalid/"


def describe(outcome: httpx.Response | httpx.TransportError) -> str:
    """A status code, or the exception's class name."""
    if isinstance(outcome, httpx.Response):
        return str(outcome.status_code)
    return type(outcome).__name__


def send_all(transport: Any, count: int, colour: str) -> list[str]:
    """Send ``count`` GETs through a client; describe each outcome."""
    outcomes: list[str] = []
    if colour == "sync":
        with httpx.Client(transport=transport) as client:
            for _ in range(count):
                try:
                    outcomes.append(describe(client.get(URL)))
                except httpx.TransportError as exc:
                    outcomes.append(describe(exc))
        return outcomes

    async def go() -> None:
        async with httpx.AsyncClient(transport=transport) as client:
            for _ in range(count):
                try:
                    outcomes.append(describe(await client.get(URL)))
                except httpx.TransportError as exc:
                    outcomes.append(describe(exc))

    asyncio.run(go())
    return outcomes


def send_direct(transport: Any, count: int, colour: str) -> list[str]:
    """Like ``send_all`` but calling the transport itself: fast enough for thousands."""
    request = httpx.Request("GET", URL)
    outcomes: list[str] = []
    if colour == "sync":
        for _ in range(count):
            try:
                outcomes.append(describe(transport.handle_request(request)))
            except httpx.TransportError as exc:
                outcomes.append(describe(exc))
        return outcomes

    async def go() -> None:
        for _ in range(count):
            try:
                outcomes.append(describe(await transport.handle_async_request(request)))
            except httpx.TransportError as exc:
                outcomes.append(describe(exc))

    asyncio.run(go())
    return outcomes


Make = Callable[..., tuple[Any, str]]


@pytest.fixture(params=["sync", "async"])
def make(request: pytest.FixtureRequest) -> Make:
    """Builds a FaultInjectingTransport or its async twin; returns it with its colour."""
    colour = request.param
    kind = FaultInjectingTransport if colour == "sync" else AsyncFaultInjectingTransport

    def build(*args: Any, **options: Any) -> tuple[Any, str]:
        return kind(*args, **options), colour

    return build


def test_schedule_applies_in_order_then_passes_through(make: Make) -> None:
    """Scheduled faults hit requests 1, 2, 3… in order; None and the rest pass through."""
    timeout, unavailable, limited = (
        Fault.error(httpx.ReadTimeout),
        Fault.status(503),
        Fault.status(429),
    )
    transport, colour = make(schedule=[timeout, None, unavailable, limited])
    assert send_all(transport, 5, colour) == ["ReadTimeout", "200", "503", "429", "200"]
    assert transport.requests == 5
    assert transport.passed == 2
    assert transport.injected == [(1, timeout), (3, unavailable), (4, limited)]


def test_chance_faults_take_over_after_the_schedule(make: Make) -> None:
    """Once the schedule has run out, the faults in ``faults`` apply."""
    transport, colour = make(schedule=[None, Fault.status(500)], faults=[Fault.status(503)])
    assert send_all(transport, 4, colour) == ["200", "500", "503", "503"]


def test_seeded_faults_repeat_exactly(make: Make) -> None:
    """The same seed injects the same faults into the same requests; another seed does not."""
    faults = [Fault.error(httpx.ConnectError, p=0.3), Fault.status(503, p=0.2)]
    first, colour = make(faults=faults, seed=11)
    second, _ = make(faults=faults, seed=11)
    other, _ = make(faults=faults, seed=12)
    outcomes = send_all(first, 50, colour)
    assert outcomes == send_all(second, 50, colour)
    assert first.injected == second.injected
    assert send_all(other, 50, colour) != outcomes
    assert {"200", "503", "ConnectError"} == set(outcomes)


def test_probabilities_are_honoured(make: Make) -> None:
    """p=0 never fires, p=1 always, and p=0.25 about a quarter of 2,000 requests."""
    never, colour = make(faults=[Fault.status(500, p=0.0)], seed=1)
    assert set(send_direct(never, 200, colour)) == {"200"}
    always, _ = make(faults=[Fault.status(500, p=1.0)], seed=1)
    assert set(send_direct(always, 200, colour)) == {"500"}
    some, _ = make(faults=[Fault.status(500, p=0.25)], seed=3)
    share = send_direct(some, 2000, colour).count("500") / 2000
    assert 0.22 <= share <= 0.28  # ±3 standard deviations
    assert len(some.injected) == some.requests - some.passed


def test_outages_follow_the_clock(make: Make) -> None:
    """Requests at clock times in [start, end) fail with the outage's error; others pass."""
    clock = FakeClock(start=0.0)
    transport, colour = make(
        faults=[Fault.outage(10.0, 20.0, exc_type=httpx.ReadError)], clock=clock
    )
    assert send_all(transport, 1, colour) == ["200"]
    clock.advance(10.0)  # exactly start: inside
    assert send_all(transport, 2, colour) == ["ReadError", "ReadError"]
    clock.advance(9.5)
    assert send_all(transport, 1, colour) == ["ReadError"]
    clock.advance(0.5)  # exactly end: outside
    assert send_all(transport, 1, colour) == ["200"]
    assert [number for number, _ in transport.injected] == [2, 3, 4]


def test_outages_win_over_scheduled_and_chance_faults(make: Make) -> None:
    """During an outage every request fails with the outage error, whatever else applies."""
    clock = FakeClock(start=5.0)
    outage = Fault.outage(0.0, 10.0)
    transport, colour = make(
        schedule=[Fault.status(503)], faults=[outage, Fault.status(429)], clock=clock
    )
    assert send_all(transport, 2, colour) == ["ConnectError", "ConnectError"]
    assert transport.injected == [(1, outage), (2, outage)]


def test_latency_advances_the_clock_exactly(make: Make) -> None:
    """Injected latency sleeps on the clock by exactly its amount, then the request goes on."""
    clock = FakeClock(start=1000.0)
    transport, colour = make(faults=[Fault.latency(0.25)], clock=clock)
    assert send_all(transport, 4, colour) == ["200"] * 4
    assert clock.sleeps == [0.25] * 4
    assert clock.now() == 1001.0
    assert transport.passed == 4


def test_latency_adds_to_an_answering_fault(make: Make) -> None:
    """A latency and a status on the same request: the wait happens, then the status answers."""
    clock = FakeClock()
    slow, busy = Fault.latency(2.0), Fault.status(503)
    transport, colour = make(faults=[slow, busy], clock=clock)
    assert send_all(transport, 1, colour) == ["503"]
    assert clock.sleeps == [2.0]
    assert transport.injected == [(1, slow), (1, busy)]
    assert transport.passed == 0


def test_only_the_first_answering_fault_is_injected(make: Make) -> None:
    """When two answering faults fire, the first answers and only it is recorded."""
    refused, busy = Fault.error(), Fault.status(503)
    transport, colour = make(faults=[refused, busy])
    assert send_all(transport, 2, colour) == ["ConnectError"] * 2
    assert transport.injected == [(1, refused), (2, refused)]


def test_errors_carry_the_request_and_statuses_their_headers(make: Make) -> None:
    """Injected errors know their request; status faults carry their headers and body."""
    busy = Fault.status(503, headers={"Retry-After": "3"}, body=b"busy")
    transport, colour = make(schedule=[Fault.error(httpx.ConnectTimeout), busy])

    async def run_async() -> tuple[BaseException, httpx.Response]:
        async with httpx.AsyncClient(transport=transport) as client:
            with pytest.raises(httpx.ConnectTimeout) as caught:
                await client.get("http://test.invalid/a")
            return caught.value, await client.get("http://test.invalid/b")

    if colour == "sync":
        with httpx.Client(transport=transport) as client:
            with pytest.raises(httpx.ConnectTimeout) as caught:
                client.get("http://test.invalid/a")
            error, response = caught.value, client.get("http://test.invalid/b")
    else:
        error, response = asyncio.run(run_async())
    assert isinstance(error, httpx.ConnectTimeout)
    assert error.request.url.path == "/a" and "injected" in str(error)
    assert (response.status_code, response.headers["retry-after"]) == (503, "3")
    assert (response.content, response.request.url.path) == (b"busy", "/b")


def test_the_inner_transport_answers_when_no_fault_fires(make: Make) -> None:
    """Requests without a fault reach the wrapped transport."""
    inner = httpx.MockTransport(lambda request: httpx.Response(204))
    transport, colour = make(inner, schedule=[Fault.status(500)])
    assert send_all(transport, 2, colour) == ["500", "204"]
    assert (transport.requests, transport.passed) == (2, 1)


def test_the_default_inner_transport_reads_the_request_body() -> None:
    """Like a server, the default inner transport consumes a streamed body (one-shot bodies)."""
    request = httpx.Request("POST", URL, content=iter([b"a", b"b"]))
    response = FaultInjectingTransport().handle_request(request)
    assert (response.status_code, response.content, request.content) == (200, b"ok", b"ab")

    async def chunks() -> Any:
        yield b"c"

    async_request = httpx.Request("POST", URL, content=chunks())
    asyncio.run(AsyncFaultInjectingTransport().handle_async_request(async_request))
    assert async_request.content == b"c"


def test_close_is_delegated_to_the_inner_transport() -> None:
    """Closing the client closes the wrapped transport, sync and async."""
    closed: list[str] = []

    class Inner(httpx.MockTransport):
        def close(self) -> None:
            closed.append("sync")

        async def aclose(self) -> None:
            closed.append("async")

    inner = Inner(lambda request: httpx.Response(200))
    with httpx.Client(transport=FaultInjectingTransport(inner)):
        pass

    async def scenario() -> None:
        async with httpx.AsyncClient(transport=AsyncFaultInjectingTransport(inner)):
            pass

    asyncio.run(scenario())
    assert closed == ["sync", "async"]


def test_a_cancelled_latency_never_reaches_the_inner_transport() -> None:
    """Cancelling a request during its injected latency leaves ``passed`` untouched."""

    class GateClock(FakeClock):
        async def sleep_async(self, seconds: float) -> None:
            await asyncio.get_running_loop().create_future()  # until cancelled

    transport = AsyncFaultInjectingTransport(faults=[Fault.latency(1.0)], clock=GateClock())

    async def scenario() -> None:
        task = asyncio.create_task(transport.handle_async_request(httpx.Request("GET", URL)))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)

    asyncio.run(scenario())
    assert (transport.requests, transport.passed) == (1, 0)


def test_counters_stay_exact_across_threads() -> None:
    """Requests from several threads are each counted once and decided once."""
    transport = FaultInjectingTransport(faults=[Fault.status(503, p=0.5)], seed=5)
    barrier = threading.Barrier(4, timeout=5)

    def worker() -> None:
        barrier.wait()
        send_direct(transport, 250, "sync")

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert transport.requests == 1000
    numbers = [number for number, _ in transport.injected]
    assert len(set(numbers)) == len(numbers) == 1000 - transport.passed
    assert 400 < len(numbers) < 600


def test_faults_are_values_with_readable_reprs() -> None:
    """Faults compare and hash by value, copy and pickle, and their repr is the constructor."""
    headers = {"Retry-After": "1"}
    busy = Fault.status(503, headers=headers, body=b"x")
    headers["Retry-After"] = "999"  # the fault kept its own copy
    assert busy == Fault.status(503, headers={"Retry-After": "1"}, body=b"x")
    assert busy != Fault.status(503)
    assert len({busy, Fault.status(503, headers={"Retry-After": "1"}, body=b"x")}) == 1
    assert copy.deepcopy(busy) == pickle.loads(pickle.dumps(busy)) == busy
    assert repr(busy) == "Fault.status(503, headers={'Retry-After': '1'}, body=b'x')"
    assert repr(Fault.error(httpx.ReadTimeout, p=0.5)) == "Fault.error(httpx.ReadTimeout, p=0.5)"
    assert repr(Fault.latency(1)) == "Fault.latency(1.0)"
    assert repr(Fault.outage(1, 2)) == "Fault.outage(1.0, 2.0)"
    assert "FaultInjectingTransport(requests=0" in repr(FaultInjectingTransport())


@pytest.mark.parametrize(
    ("build", "error", "name"),
    [
        (lambda: Fault.error(p=1.5), ValueError, "p"),
        (lambda: Fault.status(500, p=-0.1), ValueError, "p"),
        (lambda: Fault.latency(0.1, p=math.nan), TypeError, "p"),
        (lambda: Fault.error(ValueError), TypeError, "exc_type"),  # type: ignore[arg-type]
        (lambda: Fault.outage(0, 1, exc_type=Exception), TypeError, "exc_type"),  # type: ignore[arg-type]
        (lambda: Fault.latency(-1.0), ValueError, "seconds"),
        (lambda: Fault.latency(math.inf), ValueError, "seconds"),
        (lambda: Fault.outage(5.0, 5.0), ValueError, "end"),
        (lambda: Fault.outage(math.nan, 5.0), TypeError, "start"),
        (lambda: Fault.status(99), ValueError, "code"),
        (lambda: Fault.status(True), ValueError, "code"),
        (lambda: Fault.status(500, body="text"), TypeError, "body"),  # type: ignore[arg-type]
        (lambda: FaultInjectingTransport(faults=["boom"]), TypeError, "faults"),  # type: ignore[list-item]
        (lambda: FaultInjectingTransport(faults=Fault.error()), TypeError, "faults"),  # type: ignore[arg-type]
        (lambda: FaultInjectingTransport(schedule=[Fault.outage(0, 1)]), ValueError, "schedule"),
        (lambda: FaultInjectingTransport(AsyncFaultInjectingTransport()), TypeError, "inner"),  # type: ignore[arg-type]
        (lambda: AsyncFaultInjectingTransport(FaultInjectingTransport()), TypeError, "inner"),  # type: ignore[arg-type]
    ],
)
def test_bad_configuration_names_the_parameter(build: Any, error: type, name: str) -> None:
    """Invalid faults and transports fail at construction, naming the parameter."""
    with pytest.raises(error, match=name):
        build()
