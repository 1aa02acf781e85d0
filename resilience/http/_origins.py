"""The per-origin registry: each policy key's copies of the templates, assembled once.

A transport keeps one ``Origin`` per policy key (by default the origin: scheme, host, port):
its own copies of the retry (with its budget), throttle, limiter, breaker, bulkhead and hedge
templates, on the transport's clock, wired to the transport's HTTP rules, and the send
functions built from them once — plain, and hedged for idempotent requests. Built on a key's
first request, under a lock; read without one afterwards.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import httpx

from resilience._bulkhead import Bulkhead
from resilience._circuit.breaker import CircuitBreaker
from resilience._clock import Clock
from resilience._concurrency import AdaptiveConcurrency
from resilience._pipeline import Pipeline
from resilience._policy import Policy
from resilience._retry.budget import RetryBudget
from resilience._throttle import AdaptiveThrottle
from resilience.http._classify import origin_key, refused_for_load
from resilience.http._options import TransportOptions

__all__ = ["Origin", "Origins", "Verdicts"]

Send = Callable[[httpx.Request], Any]
Wrap = Callable[[Policy | None], Send]


@dataclass(frozen=True, slots=True)
class Origin:
    """The policies of one policy key, and the guarded send functions built once."""

    plain: Send
    hedged: Send
    breaker: CircuitBreaker | None
    bulkhead: Bulkhead | None
    budget: RetryBudget | None
    limiter: AdaptiveConcurrency | None = None
    throttle: AdaptiveThrottle | None = None


@dataclass(frozen=True, slots=True)
class Verdicts:
    """The transport's judgements, handed to each origin's policies."""

    retry_error: Callable[[BaseException], bool]
    retry_response: Callable[[object], bool]
    breaker_error: Callable[[BaseException], bool]
    breaker_response: Callable[[object], bool]
    # The least wait before the next attempt (Retry-After, an open breaker), given the origin's
    # breaker: a function of the failed outcome.
    wait_hint: Callable[[CircuitBreaker | None], Callable[[object], float | None]]
    discard: Callable[[object], object]


class Origins:
    """The registry: policy key -> ``Origin``."""

    __slots__ = ("_built", "_lock", "_options", "_verdicts", "_wrap", "clock", "key_of")

    def __init__(
        self, options: TransportOptions, clock: Clock, verdicts: Verdicts, wrap: Wrap
    ) -> None:
        self._options = options
        self.clock = clock
        self._verdicts = verdicts
        self._wrap = wrap
        self._built: dict[Hashable, Origin] = {}
        self._lock = threading.Lock()
        # The policy key of a request: its origin unless the user chose otherwise.
        self.key_of: Callable[[httpx.Request], Hashable] | None = options.policy_key

    def get(self, key: Hashable) -> Origin:
        """The policies of ``key``, built on its first request."""
        found = self._built.get(key)
        if found is None:
            with self._lock:
                found = self._built.get(key)
                if found is None:
                    found = self._built[key] = self._build(key)
        return found

    def find(self, url: httpx.URL | str) -> Origin | None:
        """The policies ``url`` would go through (``None`` before their first request)."""
        url = httpx.URL(url)
        key_of = self.key_of
        key = origin_key(url) if key_of is None else key_of(httpx.Request("GET", url))
        return self._built.get(key)

    def built_for(self, request: httpx.Request) -> Origin | None:
        """The policies ``request`` goes through, when they are built. (``Calls.begin_call``
        derives the same key inline: it runs on every request.)"""
        key_of = self.key_of
        return self._built.get(origin_key(request.url) if key_of is None else key_of(request))

    def _build(self, key: Hashable) -> Origin:
        options, verdicts = self._options, self._verdicts
        label = _label(key)
        given_clock = options.clock  # reaches every copy; without it each template keeps its own
        outer: list[Policy] = []
        inner: list[Policy] = []
        breaker = None
        if options.breaker is not None:
            template = options.breaker
            breaker = template.replace(
                name=f"{template.name}[{label}]",
                on=verdicts.breaker_error,
                on_result=verdicts.breaker_response,
                **({"clock": given_clock} if given_clock is not None else {}),
            )
        budget = None
        if options.retry is not None:
            retry = options.retry
            if retry.budget is not None:
                budget = retry.budget.replace(
                    name=f"{retry.budget.name}[{label}]",
                    **({"clock": given_clock} if given_clock is not None else {}),
                )
            outer.append(
                retry.replace(
                    on=verdicts.retry_error,
                    on_result=verdicts.retry_response,
                    budget=budget,
                    clock=self.clock,
                    delay_hint=verdicts.wait_hint(breaker),
                    name=f"{retry.name}[{label}]",
                )
            )
        clocked = {"clock": given_clock} if given_clock is not None else {}
        throttle = limiter = None
        if options.throttle is not None:  # what is sent stays under k x what is accepted
            throttle = options.throttle.replace(
                name=f"{options.throttle.name}[{label}]",
                on=httpx.TransportError,
                on_result=refused_for_load,
                **clocked,
            )
            inner.append(throttle)
        if options.limiter is not None:  # as many in flight as the origin absorbs
            limiter = options.limiter.replace(
                name=f"{options.limiter.name}[{label}]",
                on=(httpx.TimeoutException, TimeoutError),
                on_result=refused_for_load,
                **clocked,
            )
            inner.append(limiter)
        if breaker is not None:
            inner.append(breaker)
        bulkhead = None
        if options.bulkhead is not None:
            bulkhead = options.bulkhead.replace(name=f"{options.bulkhead.name}[{label}]", **clocked)
            inner.append(bulkhead)
        wrap = self._wrap
        plain = wrap(Pipeline(*outer, *inner, tracing=False) if outer or inner else None)
        hedged = plain
        if options.hedge is not None:
            hedge = options.hedge.replace(  # a percentile hedge: this origin's own latencies
                on_result=verdicts.retry_response,
                discard=verdicts.discard,
                clock=self.clock,
                name=f"{options.hedge.name}[{label}]",
            )
            hedged = wrap(Pipeline(*outer, hedge, *inner, tracing=False))
        return Origin(plain, hedged, breaker, bulkhead, budget, limiter, throttle)


def _label(key: Hashable) -> str:
    """An origin key as ``scheme://host[:port]``; any other policy key as its ``str``."""
    if (
        isinstance(key, tuple)
        and len(key) == 3
        and isinstance(key[0], bytes)
        and isinstance(key[1], bytes)
    ):
        scheme, host, port = key
        return f"{scheme.decode()}://{host.decode()}" + (f":{port}" if port else "")
    return str(key)


def breaker_open_for(breaker: CircuitBreaker | None) -> float:
    """Seconds the in-process ``breaker`` stays open (0.0 when it admits calls, or is shared:
    a shared breaker's state is a round trip away)."""
    if breaker is None or breaker._shared is not None:
        return 0.0
    machine = breaker._machine
    if machine.closed_permit is not None:
        return 0.0  # closed: one attribute read
    return machine.retry_after(breaker._clock.now())
