"""FaultInjectingTransport: scheduled and seeded faults, outages and latency, sync and async."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from resilience.testing import (
    AsyncFaultInjectingTransport,
    FakeClock,
    Fault,
    FaultInjectingTransport,
)


def send_all(transport: Any, count: int, colour: str) -> list[str]:
    """Send ``count`` GETs; describe each outcome as a status code or an exception name."""
    outcomes: list[str] = []
    if colour == "sync":
        with httpx.Client(transport=transport) as client:
            for _ in range(count):
                try:
                    outcomes.append(str(client.get("http://test.invalid/").status_code))
                except httpx.TransportError as exc:
                    outcomes.append(type(exc).__name__)
        return outcomes

    async def go() -> None:
        async with httpx.AsyncClient(transport=transport) as client:
            for _ in range(count):
                try:
                    outcomes.append(str((await client.get("http://test.invalid/")).status_code))
                except httpx.TransportError as exc:
                    outcomes.append(type(exc).__name__)

    asyncio.run(go())
    return outcomes


@pytest.fixture(params=["sync", "async"])
def make(request: pytest.FixtureRequest) -> Any:
    colour = request.param
    kind = FaultInjectingTransport if colour == "sync" else AsyncFaultInjectingTransport

    def build(**options: Any) -> tuple[Any, str]:
        return kind(**options), colour

    return build


def test_schedule_applies_in_order_then_passes_through(make: Any) -> None:
    """Scheduled faults hit requests 1, 2, 3… in order; None and the rest pass through."""
    transport, colour = make(
        schedule=[Fault.error(httpx.ReadTimeout), None, Fault.status(503), Fault.status(429)]
    )
    assert send_all(transport, 5, colour) == ["ReadTimeout", "200", "503", "429", "200"]
    assert transport.requests == 5
    assert transport.passed == 2
    assert [number for number, _ in transport.injected] == [1, 3, 4]


def test_seeded_faults_repeat_exactly(make: Any) -> None:
    """The same seed injects the same faults into the same requests."""
    faults = [Fault.error(httpx.ConnectError, p=0.3), Fault.status(503, p=0.2)]
    first, colour = make(faults=faults, seed=11)
    second, _ = make(faults=faults, seed=11)
    assert send_all(first, 50, colour) == send_all(second, 50, colour)
    assert first.injected == second.injected


def test_probabilities_are_honoured(make: Any) -> None:
    """p=0 never fires, p=1 always, and p=0.25 about a quarter of 2,000 requests."""
    never, colour = make(faults=[Fault.status(500, p=0.0)], seed=1)
    assert set(send_all(never, 50, colour)) == {"200"}
    always, _ = make(faults=[Fault.status(500, p=1.0)], seed=1)
    assert set(send_all(always, 50, colour)) == {"500"}
    some, _ = make(faults=[Fault.status(500, p=0.25)], seed=3)
    share = send_all(some, 2000, colour).count("500") / 2000
    assert 0.22 <= share <= 0.28


def test_outages_follow_the_clock(make: Any) -> None:
    """Every request inside [start, end) of clock time fails; others pass."""
    clock = FakeClock()
    transport, colour = make(faults=[Fault.outage(10.0, 20.0)], clock=clock)
    assert send_all(transport, 1, colour) == ["200"]
    clock.advance(10.0)
    assert send_all(transport, 2, colour) == ["ConnectError", "ConnectError"]
    clock.advance(10.0)
    assert send_all(transport, 1, colour) == ["200"]


def test_latency_advances_the_clock_exactly(make: Any) -> None:
    """Injected latency sleeps on the clock, then the request goes through."""
    clock = FakeClock()
    transport, colour = make(faults=[Fault.latency(0.25)], clock=clock)
    assert send_all(transport, 4, colour) == ["200"] * 4
    assert clock.now() == 1.0
    assert transport.passed == 4


def test_injected_errors_carry_the_request_and_statuses_their_headers() -> None:
    """Errors know their request; status faults carry the scripted headers and body."""
    transport = FaultInjectingTransport(
        schedule=[Fault.error(), Fault.status(503, headers={"Retry-After": "3"}, body=b"busy")]
    )
    with httpx.Client(transport=transport) as client:
        with pytest.raises(httpx.ConnectError) as caught:
            client.get("http://test.invalid/a")
        assert caught.value.request.url.path == "/a"
        response = client.get("http://test.invalid/b")
    assert (response.headers["retry-after"], response.content) == ("3", b"busy")


def test_inner_transport_is_called_when_no_fault_fires() -> None:
    """Requests without a fault reach the wrapped transport."""
    inner = httpx.MockTransport(lambda request: httpx.Response(204))
    transport = FaultInjectingTransport(inner, schedule=[Fault.status(500)])
    assert send_all(transport, 2, "sync") == ["500", "204"]


@pytest.mark.parametrize(
    ("build", "error", "name"),
    [
        (lambda: Fault.error(p=1.5), ValueError, "p"),
        (lambda: Fault.error(ValueError), TypeError, "exc_type"),  # type: ignore[arg-type]
        (lambda: Fault.latency(-1.0), ValueError, "seconds"),
        (lambda: Fault.outage(5.0, 5.0), ValueError, "end"),
        (lambda: Fault.status(99), ValueError, "code"),
        (lambda: FaultInjectingTransport(faults=["boom"]), TypeError, "faults"),  # type: ignore[list-item]
    ],
)
def test_bad_configuration_names_the_parameter(build: Any, error: type, name: str) -> None:
    """Invalid faults fail at construction, naming the parameter."""
    with pytest.raises(error, match=name):
        build()
