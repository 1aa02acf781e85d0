"""FaultInjectingTransport: errors, statuses, latency and outages for httpx, by schedule or by
chance (seedable) — for your tests, ours, and the benchmarks.

One decision core (``_FaultPlan``) picks what happens to request *n* at time *t*; the sync and
async transports only sleep through the clock, raise, answer, or call the inner transport.
"""

from __future__ import annotations

import math
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
_KINDS = ("error", "status", "latency", "outage")


def _check_exc_type(exc_type: object) -> None:
    if not (isinstance(exc_type, type) and issubclass(exc_type, httpx.TransportError)):
        raise TypeError(f"exc_type must be an httpx.TransportError subclass, got {exc_type!r}")


def _check_time(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise TypeError(f"{name} must be a clock time in seconds, got {value!r}")


def _type_name(exc_type: type[BaseException]) -> str:
    name = exc_type.__name__
    if getattr(httpx, name, None) is exc_type:
        return f"httpx.{name}"
    return f"{exc_type.__module__}.{exc_type.__qualname__}"


@dataclass(frozen=True, slots=True, repr=False)
class Fault:
    """One kind of fault; build it with ``Fault.error``, ``.status``, ``.latency``, ``.outage``.

    Faults are immutable, comparable and hashable, and their repr is the call that builds them.
    """

    kind: FaultKind
    p: float = 1.0
    exc_type: type[httpx.TransportError] = httpx.ConnectError
    code: int = 503
    headers: Mapping[str, str] = field(default_factory=dict, hash=False)
    body: bytes = b""
    seconds: float = 0.0
    start: float = 0.0
    end: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"kind must be one of {', '.join(_KINDS)}, got {self.kind!r}")
        check_ratio(self.p, "p", allow_zero=True)
        _check_exc_type(self.exc_type)
        code = self.code
        if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 599:
            raise ValueError(f"code must be an HTTP status in [100, 599], got {code!r}")
        if not isinstance(self.headers, Mapping):
            raise TypeError(f"headers must be a mapping, got {self.headers!r}")
        if not isinstance(self.body, bytes):
            raise TypeError(f"body must be bytes, got {type(self.body).__name__}")
        check_duration(self.seconds, "seconds")
        _check_time(self.start, "start")
        _check_time(self.end, "end")
        if self.kind == "outage" and not self.end > self.start:
            raise ValueError(f"end must be > start ({self.start!r}), got {self.end!r}")
        object.__setattr__(self, "headers", dict(self.headers))  # a copy: later edits don't leak
        for name in ("seconds", "start", "end"):
            object.__setattr__(self, name, float(getattr(self, name)))

    @classmethod
    def error(
        cls, exc_type: type[httpx.TransportError] = httpx.ConnectError, *, p: float = 1.0
    ) -> Fault:
        """Raise ``exc_type`` (an httpx transport error) instead of sending the request."""
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
        return cls("status", p, code=code, headers=headers or {}, body=body)

    @classmethod
    def latency(cls, seconds: float, *, p: float = 1.0) -> Fault:
        """Wait ``seconds`` on the clock, then go on (to the inner transport, or another fault)."""
        return cls("latency", p, seconds=seconds)

    @classmethod
    def outage(
        cls, start: float, end: float, *, exc_type: type[httpx.TransportError] = httpx.ConnectError
    ) -> Fault:
        """Fail every request whose clock time falls in ``[start, end)`` with ``exc_type``."""
        return cls("outage", exc_type=exc_type, start=start, end=end)

    def __repr__(self) -> str:
        chance = "" if self.p == 1.0 else f", p={self.p!r}"
        if self.kind == "error":
            return f"Fault.error({_type_name(self.exc_type)}{chance})"
        if self.kind == "status":
            headers = f", headers={dict(self.headers)!r}" if self.headers else ""
            body = f", body={self.body!r}" if self.body else ""
            return f"Fault.status({self.code!r}{chance}{headers}{body})"
        if self.kind == "latency":
            return f"Fault.latency({self.seconds!r}{chance})"
        error = (
            "" if self.exc_type is httpx.ConnectError else f", exc_type={_type_name(self.exc_type)}"
        )
        return f"Fault.outage({self.start!r}, {self.end!r}{error})"


def _faults(items: object, name: str, *, allow_none: bool) -> list[Fault | None]:
    if isinstance(items, Fault) or not isinstance(items, Sequence) or isinstance(items, str):
        raise TypeError(f"{name} must be a sequence of Fault values, got {items!r}")
    for item in items:
        if item is None and allow_none:
            continue
        if not isinstance(item, Fault):
            allowed = "Fault values or None" if allow_none else "Fault values"
            raise TypeError(f"{name} must hold {allowed}, got {item!r}")
    return list(items)


class _FaultPlan:
    """The sans-IO core: for request number n at time ``now``, a delay and a fault (or None).

    Scheduled faults apply to requests 1..len(schedule); chance faults after that, one draw from
    the seeded generator per chance fault per request (so request n's draws do not depend on the
    clock). Outages apply whenever ``now`` is in their window, and win over the other faults.
    Latencies add up; of the rest, the first applies and only it is recorded as injected.
    """

    def __init__(
        self, faults: Sequence[Fault], schedule: Sequence[Fault | None], seed: int | None
    ) -> None:
        checked_faults = _faults(faults, "faults", allow_none=False)
        checked_schedule = _faults(schedule, "schedule", allow_none=True)
        for fault in checked_schedule:
            if fault is not None and fault.kind == "outage":
                raise ValueError(
                    f"schedule cannot hold outages (they follow the clock), got {fault!r}: "
                    "pass it in faults"
                )
        self.outages = [f for f in checked_faults if f is not None and f.kind == "outage"]
        self.chances = [f for f in checked_faults if f is not None and f.kind != "outage"]
        self.schedule = checked_schedule
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.requests = 0
        self.passed = 0
        self.injected: list[tuple[int, Fault]] = []

    def decide(self, now: float) -> tuple[float, Fault | None]:
        """Count a request arriving at ``now``: (seconds to wait first, fault to answer with)."""
        with self.lock:
            self.requests += 1
            number = self.requests
            if number <= len(self.schedule):
                scheduled = self.schedule[number - 1]
                drawn = [] if scheduled is None else [scheduled]
            else:
                drawn = [f for f in self.chances if self.rng.random() < f.p]
            active = [f for f in self.outages if f.start <= now < f.end] + drawn
            delay, terminal = 0.0, None
            for fault in active:
                if fault.kind == "latency":
                    delay += fault.seconds
                elif terminal is None:
                    terminal = fault
                else:
                    continue  # a second error or status: the first one already answers
                self.injected.append((number, fault))
            return delay, terminal

    def reached_inner(self) -> None:
        with self.lock:
            self.passed += 1


def _respond(fault: Fault, request: httpx.Request) -> httpx.Response:
    if fault.kind == "status":
        return httpx.Response(
            fault.code, headers=dict(fault.headers), content=fault.body, request=request
        )
    raise fault.exc_type(f"injected {fault.exc_type.__name__}", request=request)


class _Ok(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """The default inner transport: reads the request body, answers 200 ``ok``, no network."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        return httpx.Response(200, content=b"ok", request=request)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
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
        self._clock = SYSTEM_CLOCK if clock is None else clock

    @property
    def requests(self) -> int:
        """Requests seen so far."""
        return self._plan.requests

    @property
    def passed(self) -> int:
        """Requests handed to the inner transport."""
        return self._plan.passed

    @property
    def injected(self) -> list[tuple[int, Fault]]:
        """(request number, fault) for every fault injected, in order (a copy)."""
        with self._plan.lock:
            return list(self._plan.injected)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(requests={self.requests}, passed={self.passed}, "
            f"injected={len(self._plan.injected)})"
        )


def _check_inner(inner: object, method: str, kind: str) -> None:
    if not callable(getattr(inner, method, None)):
        raise TypeError(f"inner must be an {kind} (with {method}), got {inner!r}")


class FaultInjectingTransport(_Counters, httpx.BaseTransport):
    """Wrap ``inner`` (default: reads the request, answers 200 ``ok``) and inject faults.

    ``schedule[n - 1]`` applies to request *n* (``None`` lets it through); after the schedule,
    each fault in ``faults`` applies with its probability ``p``, drawn from
    ``random.Random(seed)``; outages (in ``faults``) apply whenever the clock is inside their
    window. Latency sleeps on ``clock`` (a ``FakeClock`` makes it instant). ``requests``,
    ``passed`` and ``injected`` tell what happened. Thread-safe.
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
        if inner is not None:
            _check_inner(inner, "handle_request", "httpx.BaseTransport")
        self._inner = inner if inner is not None else _Ok()
        self._setup(faults, schedule, seed, clock)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        delay, fault = self._plan.decide(self._clock.now())
        if delay > 0.0:
            self._clock.sleep(delay)
        if fault is not None:
            return _respond(fault, request)
        self._plan.reached_inner()
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
        if inner is not None:
            _check_inner(inner, "handle_async_request", "httpx.AsyncBaseTransport")
        self._inner = inner if inner is not None else _Ok()
        self._setup(faults, schedule, seed, clock)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        delay, fault = self._plan.decide(self._clock.now())
        if delay > 0.0:
            await self._clock.sleep_async(delay)
        if fault is not None:
            return _respond(fault, request)
        self._plan.reached_inner()
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()
