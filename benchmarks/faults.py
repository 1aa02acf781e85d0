"""Under injected faults: what each client achieves, and what it costs the dependency.

A downstream service (an in-process httpx transport with a seeded fault schedule, so every
client meets the same faults) goes through four phases of N calls each:

1. healthy          — every request answered 200;
2. flaky            — 20 % answered 503, 5 % refused (ConnectError);
3. lost responses   — POSTs; 10 % are processed, then the response is lost (ReadTimeout);
4. outage           — every request answered 503.

The outage comes last: a breaker it opens would otherwise still be refusing (or, after a
failed half-open trial, refusing again) when the next phase begins, and that phase's column
would measure ``open_for`` rather than what the phase is about.

Clients: bare httpx; tenacity and stamina around ``client.request`` (retry 5xx and transport
errors, 4 attempts — the usual hand-written setup); httpx-retries' RetryTransport (4 attempts,
its defaults: idempotent methods only); ours, ResilientTransport with Retry(4) + RetryBudget
(10 %) + CircuitBreaker, as it ships (a keyed POST whose response was lost is not resent: the
server may have acted) and with the service's origin in ``origins_honour_keys`` (the service
stands for one behind ``IdempotencyMiddleware``: a keyed resend is not a new effect). Waits
are off for the peers and simulated for us (a FakeClock, calls arriving every 10 ms of it):
the scenario is about decisions, not timing.

Columns per phase: success (2xx answers), amplification (requests the service received per
call), and in the lost-responses phase the duplicates (processed POSTs resent without an
idempotency key: the service cannot tell them from new ones).
"""

from __future__ import annotations

import argparse
import random
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from benchmarks import _plots
from benchmarks._harness import header
from resilience import Backoff, CircuitBreaker, Retry, RetryBudget
from resilience.http import ResilientTransport
from resilience.testing import FakeClock

PEERS = ["resilience", "httpx", "tenacity", "stamina", "httpx-retries"]
PHASES = ("healthy", "flaky", "lost responses", "outage")
ORIGIN = "http://127.0.0.1:8080"
URL = f"{ORIGIN}/charges"


@dataclass
class Service(httpx.BaseTransport):
    """The dependency: answers by phase, from a seeded generator; counts what it receives."""

    seed: int
    phase: str = "healthy"
    received: int = 0
    processed_unkeyed: dict[bytes, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.received += 1
            roll = self.rng.random()
        if self.phase == "outage" or (self.phase == "flaky" and roll < 0.20):
            return httpx.Response(503, request=request)
        if self.phase == "flaky" and roll < 0.25:
            raise httpx.ConnectError("refused", request=request)
        body = request.read()
        if "idempotency-key" not in request.headers:
            with self.lock:  # a keyless request: every copy is a separate effect
                self.processed_unkeyed[body] = self.processed_unkeyed.get(body, 0) + 1
        if self.phase == "lost responses" and roll < 0.10:
            raise httpx.ReadTimeout("response lost", request=request)
        return httpx.Response(200, request=request)


def _retryable_status(response: httpx.Response) -> bool:
    return response.status_code >= 500


def bare(service: Service, clock: FakeClock) -> Callable[[str], httpx.Response]:
    client = httpx.Client(transport=service)
    return lambda method: client.request(method, URL, content=_body())


def tenacity_client(service: Service, clock: FakeClock) -> Callable[[str], httpx.Response]:
    import tenacity

    client = httpx.Client(transport=service)
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(4),
        retry=tenacity.retry_if_exception_type(httpx.HTTPError)
        | tenacity.retry_if_result(_retryable_status),
        wait=tenacity.wait_none(),
        # out of attempts: return the last response, or raise the last exception
        retry_error_callback=lambda state: state.outcome.result(),  # type: ignore[union-attr]
    )

    def call(method: str) -> Any:
        body = _body()
        return retrying(client.request, method, URL, content=body)

    return call


def stamina_client(service: Service, clock: FakeClock) -> Callable[[str], httpx.Response]:
    import stamina
    import stamina.instrumentation

    client = httpx.Client(transport=service)
    stamina.set_testing(True, attempts=4)  # no waits
    stamina.instrumentation.set_on_retry_hooks([])  # no log line per retry

    def call(method: str) -> httpx.Response:
        body = _body()

        @stamina.retry(on=httpx.HTTPError, attempts=4)
        def once() -> httpx.Response:
            response = client.request(method, URL, content=body)
            response.raise_for_status()
            return response

        try:
            return once()
        except httpx.HTTPStatusError as exc:
            return exc.response

    return call


def httpx_retries_client(service: Service, clock: FakeClock) -> Callable[[str], httpx.Response]:
    from httpx_retries import Retry as PeerRetry
    from httpx_retries import RetryTransport

    client = httpx.Client(
        transport=RetryTransport(transport=service, retry=PeerRetry(total=3, backoff_factor=0.0))
    )
    return lambda method: client.request(method, URL, content=_body())


def ours(
    service: Service, clock: FakeClock, *, honour_keys: bool = False
) -> Callable[[str], httpx.Response]:
    transport = ResilientTransport(
        service,
        retry=Retry(4, backoff=Backoff(initial=0.05, maximum=1.0), budget=RetryBudget(ratio=0.1)),
        breaker=CircuitBreaker("dependency", failure_rate=0.5, minimum_calls=20, open_for=5.0),
        origins_honour_keys=[ORIGIN] if honour_keys else False,
        clock=clock,
        tracing=False,
    )
    client = httpx.Client(transport=transport)
    return lambda method: client.request(method, URL, content=_body())


def ours_honouring_keys(service: Service, clock: FakeClock) -> Callable[[str], httpx.Response]:
    return ours(service, clock, honour_keys=True)


_counter = iter(range(10**9))


def _body() -> bytes:
    return b"call-%d" % next(_counter)  # one logical call: the same bytes on every resend


@dataclass
class PhaseResult:
    calls: int = 0
    ok: int = 0
    received: int = 0
    duplicates: int = 0


def run_client(
    build: Callable[..., Callable[[str], httpx.Response]], calls: int
) -> list[PhaseResult]:
    clock = FakeClock()
    service = Service(seed=42)
    call = build(service, clock)
    results = []
    for phase in PHASES:
        service.phase = phase
        before = service.received
        unkeyed_before = dict(service.processed_unkeyed)
        result = PhaseResult(calls=calls)
        method = "POST" if phase == "lost responses" else "GET"
        for _ in range(calls):
            clock.advance(0.01)
            try:
                response = call(method)
            except Exception:
                continue
            result.ok += 200 <= response.status_code < 300
        result.received = service.received - before
        if phase == "lost responses":
            result.duplicates = sum(
                count - unkeyed_before.get(body, 0) - 1
                for body, count in service.processed_unkeyed.items()
                if count - unkeyed_before.get(body, 0) > 1
            )
        results.append(result)
    return results


CLIENTS: list[tuple[str, Callable[..., Callable[[str], httpx.Response]]]] = [
    ("bare httpx", bare),
    ("tenacity (4 attempts)", tenacity_client),
    ("stamina (4 attempts)", stamina_client),
    ("httpx-retries (4)", httpx_retries_client),
    ("resilience", ours),
    ("resilience, origin honours keys", ours_honouring_keys),
]


def _record(rows: dict[str, list[PhaseResult]], calls: int) -> None:
    """The table as two panels of the scenario's plot: success and amplification per phase."""
    names = list(rows)
    note = f"{calls} calls per phase"
    success = {
        phase: [100.0 * rows[name][i].ok / calls for name in names]
        for i, phase in enumerate(PHASES)
    }
    load = {
        phase: [rows[name][i].received / calls for name in names] for i, phase in enumerate(PHASES)
    }
    _plots.record(_plots.Chart("calls that succeeded", "% of calls", names, success, note=note))
    _plots.record(
        _plots.Chart("requests the dependency received per call", "requests per call", names, load)
    )
    lost = PHASES.index("lost responses")
    duplicates = {"lost responses": [float(rows[name][lost].duplicates) for name in names]}
    _plots.record(
        _plots.Chart("POSTs the service processed twice", "duplicate POSTs", names, duplicates)
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a fast smoke run")
    parser.add_argument("--calls", type=int, default=None, help="calls per phase")
    args = parser.parse_args(argv)
    calls = args.calls or (200 if args.quick else 1000)
    warnings.simplefilter("ignore")
    print(header(PEERS))
    print(f"# {calls} calls per phase; success % / requests received per call\n")
    heads = "".join(f" {phase:>17}" for phase in PHASES)
    print(f"{'client':<32}{heads} {'duplicates':>11}")
    rows: dict[str, list[PhaseResult]] = {}
    for name, build in CLIENTS:
        results = rows[name] = run_client(build, calls)
        cells = "".join(
            f" {100.0 * r.ok / r.calls:7.1f}% {r.received / r.calls:6.2f}x  " for r in results
        )
        duplicates = results[PHASES.index("lost responses")].duplicates
        print(f"{name:<32}{cells} {duplicates:>11}", flush=True)
    _record(rows, calls)
    print(
        "\nduplicates: POSTs the service processed again without an idempotency key (ours sends\n"
        "a key, so a server with IdempotencyMiddleware answers the resend from its record)."
    )


if __name__ == "__main__":
    main()
