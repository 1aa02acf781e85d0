"""FaultInjectingTransport: errors, statuses, latency and outages for httpx, by schedule or by
chance (seedable) — for your tests, ours, and the benchmarks.

One decision core (``_FaultPlan``) picks what happens to request *n* at time *t*; the sync and
async transports only sleep through the clock, raise, answer, or call the inner transport.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import httpx

from resilience._clock import SYSTEM_CLOCK, Clock
from resilience._validate import check_duration, check_ratio

__all__ = ["AsyncFaultInjectingTransport", "Fault", "FaultInjectingTransport"]

FaultKind = Literal["error", "status", "latency", "outage"]


@dataclass(frozen=True, slots=True)
class Fault:
    """One kind of fault; build it with ``Fault.error``, ``.status``, ``.latency``, ``.outage``."""

    kind: FaultKind
    p: float = 1.0
    exc_type: type[httpx.TransportError] = httpx.ConnectError
    code: int = 503
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    seconds: float = 0.0
    start: float = 0.0
    end: float = 0.0

    @classmethod
    def error(
        cls, exc_type: type[httpx.TransportError] = httpx.ConnectError, *, p: float = 1.0
    ) -> Fault:
        """Raise ``exc_type`` (an httpx transport error) instead of sending the request."""
        if not (isinstance(exc_type, type) and issubclass(exc_type, httpx.TransportError)):
            raise TypeError(f"exc_type must be an httpx.TransportError subclass, got {exc_type!r}")
        check_ratio(p, "p", allow_zero=True)
        return cls("error", p, exc_type=exc_type)

    @classmethod
    def status(
        cls,
        code: int,
        *,
        p: float = 1.0,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
    ) -> Fault:
        """Answer ``code`` (with ``headers`` and ``body``) without calling the inner transport."""
        if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 599:
            raise ValueError(f"code must be an HTTP status in [100, 599], got {code!r}")
        check_ratio(p, "p", allow_zero=True)
        return cls("status", p, code=code, headers=dict(headers or {}), body=body)

    @classmethod
    def latency(cls, seconds: float, *, p: float = 1.0) -> Fault:
        """Wait ``seconds`` on the clock, then send the request as usual."""
        check_duration(seconds, "seconds")
        check_ratio(p, "p", allow_zero=True)
        return cls("latency", p, seconds=float(seconds))

    @classmethod
    def outage(
        cls, start: float, end: float, *, exc_type: type[httpx.TransportError] = httpx.ConnectError
    ) -> Fault:
        """Fail every request whose clock time falls in ``[start, end)`` with ``exc_type``."""
        if not end > start:
            raise ValueError(f"end must be > start ({start!r}), got {end!r}")
        if not (isinstance(exc_type, type) and issubclass(exc_type, httpx.TransportError)):
            raise TypeError(f"exc_type must be an httpx.TransportError subclass, got {exc_type!r}")
        return cls("outage", 1.0, exc_type=exc_type, start=float(start), end=float(end))


class _FaultPlan:
    """Decides, for request number n at time ``now``: a latency, then a fault or pass-through."""

    def __init__(self, faults: Sequence[Fault], schedule: Sequence[Fault | None], seed: int | None):
        for name, items in (("faults", faults), ("schedule", schedule)):
            for item in items:
                if item is not None and not isinstance(item, Fault):
                    raise TypeError(f"{name} must hold Fault values, got {item!r}")
        self.outages = [fault for fault in faults if fault.kind == "outage"]
        self.chances = [fault for fault in faults if fault.kind != "outage"]
        self.schedule = list(schedule)
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.requests = 0
        self.passed = 0
        self.injected: list[tuple[int, Fault]] = []

    def decide(self, now: float) -> tuple[float, Fault | None]:
        with self.lock:
            self.requests += 1
            number = self.requests
            delay, terminal = 0.0, None
            if number <= len(self.schedule):
                chosen = [self.schedule[number - 1]]
            else:
                chosen = [f for f in self.chances if self.rng.random() < f.p]
            chosen += [f for f in self.outages if f.start <= now < f.end]
            for fault in chosen:
                if fault is None:
                    continue
                self.injected.append((number, fault))
                if fault.kind == "latency":
                    delay += fault.seconds
                elif terminal is None:
                    terminal = fault
            if terminal is None:
                self.passed += 1
            return delay, terminal


def _respond(fault: Fault, request: httpx.Request) -> httpx.Response:
    if fault.kind == "status":
        return httpx.Response(
            fault.code, headers=dict(fault.headers), content=fault.body, request=request
        )
    raise fault.exc_type(f"injected {fault.exc_type.__name__}", request=request)


class _Ok(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """The default inner transport: 200 ``ok`` for everything, no network."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"ok", request=request)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"ok", request=request)


class _Counters:
    _plan: _FaultPlan
    _clock: Clock

    def _setup(
        self,
        faults: Sequence[Fault],
        schedule: Sequence[Fault | None],
        seed: int | None,
        clock: Clock | None,
    ) -> None:
        self._plan = _FaultPlan(faults, schedule, seed)
        self._clock = clock or SYSTEM_CLOCK

    @property
    def requests(self) -> int:
        """Requests seen so far."""
        return self._plan.requests

    @property
    def passed(self) -> int:
        """Requests that reached the inner transport."""
        return self._plan.passed

    @property
    def injected(self) -> list[tuple[int, Fault]]:
        """(request number, fault) for every fault injected, in order."""
        with self._plan.lock:
            return list(self._plan.injected)


class FaultInjectingTransport(_Counters, httpx.BaseTransport):
    """Wrap ``inner`` (default: answers 200 ``ok``) and inject faults into requests.

    ``schedule[n - 1]`` applies to request *n* (``None`` lets it through); after the schedule,
    each fault in ``faults`` applies with its probability ``p``, drawn from
    ``random.Random(seed)``; outages apply whenever the clock is inside their window. Latency
    sleeps on ``clock`` (a ``FakeClock`` makes it instant). Thread-safe.
    """

    def __init__(
        self,
        inner: httpx.BaseTransport | None = None,
        *,
        faults: Sequence[Fault] = (),
        schedule: Sequence[Fault | None] = (),
        seed: int | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._inner = inner if inner is not None else _Ok()
        self._setup(faults, schedule, seed, clock)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        delay, fault = self._plan.decide(self._clock.now())
        if delay > 0.0:
            self._clock.sleep(delay)
        if fault is not None:
            return _respond(fault, request)
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


class AsyncFaultInjectingTransport(_Counters, httpx.AsyncBaseTransport):
    """The ``httpx.AsyncClient`` twin of ``FaultInjectingTransport``; same arguments."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport | None = None,
        *,
        faults: Sequence[Fault] = (),
        schedule: Sequence[Fault | None] = (),
        seed: int | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._inner = inner if inner is not None else _Ok()
        self._setup(faults, schedule, seed, clock)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        delay, fault = self._plan.decide(self._clock.now())
        if delay > 0.0:
            await self._clock.sleep_async(delay)
        if fault is not None:
            return _respond(fault, request)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()
