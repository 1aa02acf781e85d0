"""Per-call overhead of each policy on a no-op function, beside tenacity, stamina, pybreaker
and pyresilience, measured in the same run.

Targets (issue 2): ``Pipeline(Retry, CircuitBreaker, Bulkhead)`` costs <= 3 µs per call on the
success path, <= 1/8 of tenacity + pybreaker stacked, and less than pyresilience; a zero delay
never calls ``sleep(0)``.
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Callable

from benchmarks._harness import Case, Result, header, run_cases, table
from resilience import (
    Backoff,
    Bulkhead,
    CircuitBreaker,
    Deadline,
    Fallback,
    Pipeline,
    Retry,
    Timeout,
)

PEERS = ["resilience", "tenacity", "stamina", "pybreaker", "pyresilience"]


def noop(i: int) -> int:
    return i


async def anoop(i: int) -> int:
    return i


def _pipeline() -> Pipeline:
    return Pipeline(Retry(), CircuitBreaker(), Bulkhead(64))


def success_cases() -> list[Case]:
    import pybreaker
    import stamina
    import tenacity
    from pyresilience import CircuitBreakerConfig, RetryConfig, resilient

    tenacity_retry = tenacity.retry(
        stop=tenacity.stop_after_attempt(3), wait=tenacity.wait_exponential_jitter()
    )
    breaker = pybreaker.CircuitBreaker()
    return [
        Case("bare call", noop, group="success path, sync"),
        Case("resilience Retry", Retry()(noop), group="success path, sync"),
        Case("resilience CircuitBreaker", CircuitBreaker()(noop), group="success path, sync"),
        Case("resilience Bulkhead", Bulkhead(64)(noop), group="success path, sync"),
        Case(
            "resilience Timeout (sync: publishes)", Timeout(10.0)(noop), group="success path, sync"
        ),
        Case(
            "resilience Deadline (sync: publishes)",
            Deadline(10.0)(noop),
            group="success path, sync",
        ),
        Case("resilience Fallback", Fallback(None)(noop), group="success path, sync"),
        Case(
            "resilience Pipeline(Retry, Breaker, Bulkhead)",
            _pipeline()(noop),
            group="success path, sync",
        ),
        Case("tenacity retry", tenacity_retry(noop), group="success path, sync"),
        Case(
            "stamina retry",
            stamina.retry(on=Exception, attempts=3)(noop),
            group="success path, sync",
        ),
        Case("pybreaker", breaker(noop), group="success path, sync"),
        Case(
            "tenacity + pybreaker",
            tenacity_retry(pybreaker.CircuitBreaker()(noop)),
            group="success path, sync",
        ),
        Case(
            "pyresilience retry + breaker",
            resilient(retry=RetryConfig(max_attempts=3), circuit_breaker=CircuitBreakerConfig())(
                noop
            ),
            group="success path, sync",
        ),
    ]


def async_cases() -> list[Case]:
    import stamina
    import tenacity

    tenacity_retry = tenacity.retry(
        stop=tenacity.stop_after_attempt(3), wait=tenacity.wait_exponential_jitter()
    )
    return [
        Case("bare await", acall=anoop, group="success path, async"),
        Case("resilience Retry (async)", acall=Retry()(anoop), group="success path, async"),
        Case("resilience Pipeline (async)", acall=_pipeline()(anoop), group="success path, async"),
        Case(
            "resilience Timeout (async: cancels)",
            acall=Timeout(10.0)(anoop),
            group="success path, async",
        ),
        Case("tenacity retry (async)", acall=tenacity_retry(anoop), group="success path, async"),
        Case(
            "stamina retry (async)",
            acall=stamina.retry(on=Exception, attempts=3)(anoop),
            group="success path, async",
        ),
    ]


def _fails_every_other_call() -> Callable[[int], int]:
    state = {"calls": 0}

    def flaky(i: int) -> int:
        state["calls"] += 1
        if state["calls"] % 2:
            raise ConnectionError("transient")
        return i

    return flaky


def retry_cases() -> list[Case]:
    import stamina
    import tenacity

    return [
        Case("bare call", noop, group="one failure then success, zero delay"),
        Case(
            "resilience Retry(backoff=0)",
            Retry(3, backoff=Backoff(0.0, 0.0))(_fails_every_other_call()),
            group="one failure then success, zero delay",
        ),
        Case(
            "tenacity retry(wait_none) (sleeps 0)",
            tenacity.retry(stop=tenacity.stop_after_attempt(3), wait=tenacity.wait_none())(
                _fails_every_other_call()
            ),
            group="one failure then success, zero delay",
        ),
        Case(
            "stamina retry(wait 0) (sleeps 0)",
            stamina.retry(
                on=Exception, attempts=3, wait_initial=0.0, wait_max=0.0, wait_jitter=0.0
            )(_fails_every_other_call()),
            group="one failure then success, zero delay",
        ),
    ]


def _summary(results: list[Result]) -> str:
    med = {r.name: r.median for r in results}
    base = med["bare call"]
    ours = med["resilience Pipeline(Retry, Breaker, Bulkhead)"] - base
    stacked = med["tenacity + pybreaker"] - base
    pyres = med["pyresilience retry + breaker"] - base
    return (
        f"pipeline overhead {ours:.2f} µs (target <= 3.00): "
        f"{'MET' if ours <= 3.0 else 'MISSED'}; tenacity+pybreaker / ours = {stacked / ours:.1f}x "
        f"(target >= 8x): {'MET' if stacked / ours >= 8 else 'MISSED'}; "
        f"pyresilience / ours = {pyres / ours:.1f}x (target > 1x): "
        f"{'MET' if pyres > ours else 'MISSED'}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a fast smoke run (few rounds)")
    args = parser.parse_args(argv)
    rounds, batch, budget = (3, 2_000, 5.0) if args.quick else (9, 20_000, 90.0)
    warnings.simplefilter("ignore")
    import stamina.instrumentation

    stamina.instrumentation.set_on_retry_hooks([])  # no logging in the timed loop
    print(header(PEERS))
    print(f"# {rounds} interleaved rounds of {batch} calls; median µs per call\n")
    sync = run_cases(success_cases(), rounds=rounds, batch=batch, max_seconds=budget)
    print(table(sync, baseline="bare call", ours="resilience Pipeline(Retry, Breaker, Bulkhead)"))
    print("\n" + _summary(sync) + "\n")
    asyncs = run_cases(async_cases(), rounds=rounds, batch=batch, max_seconds=budget)
    print(table(asyncs, baseline="bare await", ours="resilience Pipeline (async)"))
    print()
    retry = run_cases(retry_cases(), rounds=rounds, batch=max(200, batch // 20), max_seconds=budget)
    print(table(retry, baseline="bare call", ours="resilience Retry(backoff=0)"))


if __name__ == "__main__":
    main()
