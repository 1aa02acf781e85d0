"""Per-call overhead of each policy on a no-op function, beside tenacity, stamina, pybreaker and
pyresilience measured in the same run; async variants; and the retry path with a zero delay.

Targets (issue 2, acceptance 8): ``Pipeline(Retry(), CircuitBreaker(), Bulkhead(...))`` costs
<= 3 µs per call on the success path, <= 1/8 of tenacity + pybreaker stacked, and less than
pyresilience; a zero delay between attempts never calls ``sleep(0)``.

``python -m benchmarks overhead [--quick] [--rounds N] [--batch N] [--profile]``
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

from benchmarks._harness import (
    Case,
    Result,
    count_builtin_calls,
    header,
    patched,
    run_cases,
    table,
)
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

BARE = "bare call"
PIPELINE = "resilience Pipeline(Retry, CircuitBreaker, Bulkhead)"
STACKED = "tenacity + pybreaker"
PYRESILIENCE = "pyresilience retry + breaker"
TENACITY = "tenacity retry"
BARE_ASYNC = "bare await"
PIPELINE_ASYNC = "resilience Pipeline(Retry, CircuitBreaker, Bulkhead)"
HAND_RETRY = "hand-written try/except retry"
OURS_RETRY = "resilience Retry(backoff=Backoff(0, 0))"

# BENCHMARKING.md's figure for tenacity's success path on a quiet machine of this type: printed
# beside this run's figure as a sanity check of the machine's state, never as a baseline.
REFERENCE_TENACITY_US = 24.2

SYNC = "success path, sync (overhead over a bare call of a no-op)"
ASYNC = "success path, async (overhead over a bare await of a no-op coroutine)"
RETRY = "one failure then success, zero delay (overhead over a hand-written retry)"
ARETRY = "one failure then success, zero delay, async (over a hand-written retry)"


def noop(i: int) -> int:
    return i


async def anoop(i: int) -> int:
    return i


def _pipeline() -> Pipeline:
    return Pipeline(Retry(), CircuitBreaker(), Bulkhead(64))


def _tenacity_retry() -> Any:
    import tenacity

    return tenacity.retry(
        stop=tenacity.stop_after_attempt(3), wait=tenacity.wait_exponential_jitter()
    )


def _pyresilience() -> Any:
    from pyresilience import CircuitBreakerConfig, RetryConfig, resilient

    return resilient(retry=RetryConfig(max_attempts=3), circuit_breaker=CircuitBreakerConfig())


# -- success path ------------------------------------------------------------------------------


def success_cases() -> list[Case]:
    import pybreaker
    import stamina

    everything = Pipeline(
        Fallback(None), Deadline(10.0), Retry(), CircuitBreaker(), Bulkhead(64), Timeout(10.0)
    )
    cases = [
        (BARE, noop),
        ("resilience Retry", Retry()(noop)),
        ("resilience CircuitBreaker", CircuitBreaker()(noop)),
        ("resilience Bulkhead", Bulkhead(64)(noop)),
        ("resilience Timeout (sync: publishes the deadline)", Timeout(10.0)(noop)),
        ("resilience Deadline (sync: publishes the deadline)", Deadline(10.0)(noop)),
        ("resilience Fallback", Fallback(None)(noop)),
        (PIPELINE, _pipeline()(noop)),
        ("resilience Pipeline of all six", everything(noop)),
        (TENACITY, _tenacity_retry()(noop)),
        ("stamina retry", stamina.retry(on=Exception, attempts=3)(noop)),
        ("pybreaker", pybreaker.CircuitBreaker()(noop)),
        (STACKED, _tenacity_retry()(pybreaker.CircuitBreaker()(noop))),
        (PYRESILIENCE, _pyresilience()(noop)),
    ]
    return [Case(name, call, group=SYNC) for name, call in cases]


def async_cases() -> list[Case]:
    import stamina

    async def stdlib_timeout(i: int) -> int:
        async with asyncio.timeout(10.0):  # type: ignore[attr-defined,unused-ignore]
            return await anoop(i)

    cases: list[tuple[str, Callable[[int], Awaitable[object]]]] = [
        (BARE_ASYNC, anoop),
        ("resilience Retry", Retry()(anoop)),
        (PIPELINE_ASYNC, _pipeline()(anoop)),
        ("resilience Timeout (async: arms a cancel timer)", Timeout(10.0)(anoop)),
    ]
    if sys.version_info >= (3, 11):
        cases.append(("asyncio.timeout(10) (stdlib, for scale)", stdlib_timeout))
    cases += [
        ("tenacity retry", _tenacity_retry()(anoop)),
        ("stamina retry", stamina.retry(on=Exception, attempts=3)(anoop)),
        ("pyresilience retry + breaker", _pyresilience()(anoop)),
    ]
    return [Case(name, acall=acall, group=ASYNC) for name, acall in cases]


# -- retry path: fail once, then succeed, with no delay ------------------------------------------


def _fails_every_other_call() -> Callable[[int], int]:
    """A function whose odd-numbered calls raise: each guarded call fails once, then succeeds."""
    calls = 0

    def flaky(i: int) -> int:
        nonlocal calls
        calls += 1
        if calls & 1:
            raise ConnectionError("transient")
        return i

    return flaky


def _afails_every_other_call() -> Callable[[int], Awaitable[int]]:
    calls = 0

    async def flaky(i: int) -> int:
        nonlocal calls
        calls += 1
        if calls & 1:
            raise ConnectionError("transient")
        return i

    return flaky


def _hand_written(flaky: Callable[[int], int]) -> Callable[[int], int]:
    def once_more(i: int) -> int:
        try:
            return flaky(i)
        except ConnectionError:
            return flaky(i)

    return once_more


def _ahand_written(flaky: Callable[[int], Awaitable[int]]) -> Callable[[int], Awaitable[int]]:
    async def once_more(i: int) -> int:
        try:
            return await flaky(i)
        except ConnectionError:
            return await flaky(i)

    return once_more


def _zero_wait_retries() -> list[tuple[str, Callable[[Any], Any]]]:
    """The retry decorators under test, each configured for no delay between attempts."""
    import stamina
    import tenacity
    from pyresilience import RetryConfig, resilient

    return [
        (OURS_RETRY, Retry(3, backoff=Backoff(0.0, 0.0))),
        (
            "tenacity retry(wait=wait_none())",
            tenacity.retry(stop=tenacity.stop_after_attempt(3), wait=tenacity.wait_none()),
        ),
        (
            "stamina retry(wait_initial=0, wait_max=0, wait_jitter=0)",
            stamina.retry(
                on=Exception, attempts=3, wait_initial=0.0, wait_max=0.0, wait_jitter=0.0
            ),
        ),
        (
            "pyresilience retry(delay=0, jitter=False)",
            resilient(retry=RetryConfig(max_attempts=3, delay=0.0, jitter=False)),
        ),
    ]


def _sleep0(i: int) -> int:
    time.sleep(0)
    return i


async def _asleep0(i: int) -> int:
    await asyncio.sleep(0)
    return i


def retry_cases() -> list[Case]:
    cases = [Case(HAND_RETRY, _hand_written(_fails_every_other_call()), group=RETRY)]
    for name, decorator in _zero_wait_retries():
        cases.append(Case(name, decorator(_fails_every_other_call()), group=RETRY))
    cases.append(Case("time.sleep(0) alone, for scale", _sleep0, group=RETRY))
    return cases


def async_retry_cases() -> list[Case]:
    cases = [Case(HAND_RETRY, acall=_ahand_written(_afails_every_other_call()), group=ARETRY)]
    for name, decorator in _zero_wait_retries():
        cases.append(Case(name, acall=decorator(_afails_every_other_call()), group=ARETRY))
    cases.append(Case("asyncio.sleep(0) alone, for scale", acall=_asleep0, group=ARETRY))
    return cases


def _sleeps(decorator: Callable[[Any], Any], calls: int) -> tuple[float, float, list[float]]:
    """Sleeps per guarded call, sync and async, and the distinct async delays requested."""
    guarded = decorator(_fails_every_other_call())

    def run_sync() -> None:
        for i in range(calls):
            if guarded(i) != i:
                raise AssertionError("wrong result")

    sync = count_builtin_calls(time.sleep, run_sync) / calls

    aguarded = decorator(_afails_every_other_call())
    delays: list[float] = []
    real_sleep = asyncio.sleep

    def counting_sleep(delay: float, *args: Any, **kwargs: Any) -> Any:
        delays.append(delay)
        return real_sleep(delay, *args, **kwargs)

    async def run_async() -> None:
        for i in range(calls):
            if await aguarded(i) != i:
                raise AssertionError("wrong result")

    with patched(asyncio, "sleep", counting_sleep):
        asyncio.run(run_async())
    return sync, len(delays) / calls, sorted(set(delays))


def count_sleeps(calls: int = 200) -> list[tuple[str, float, float, list[float]]]:
    """Sleeps per guarded call on the retry path: (name, sync, async, async delays seen).

    Sync: every call of the C function ``time.sleep``, by any route (a profiler hook, so an alias
    bound at import time is seen too). Async: every call of ``asyncio.sleep`` (patched).
    """
    return [(name, *_sleeps(decorator, calls)) for name, decorator in _zero_wait_retries()]


# -- report ------------------------------------------------------------------------------------


def _paired(results: list[Result], name: str, baseline: str, *, cpu: bool = False) -> list[float]:
    """Per-round overhead of ``name`` over ``baseline`` (both timed in the same round)."""
    samples = {r.name: r.cpu_samples if cpu else r.samples for r in results}
    return [c - b for c, b in zip(samples[name], samples[baseline], strict=True)]


def _verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def summary(results: list[Result]) -> str:
    """The verdict on the targets (medians of wall time), with per-round (paired) ratios and
    two checks on the machine's state: CPU time, and tenacity against its reference figure."""
    med = {result.name: result.median for result in results}
    cpu = {result.name: result.cpu_median for result in results}
    base = med[BARE]
    ours = med[PIPELINE] - base
    stacked = med[STACKED] - base
    pyres = med[PYRESILIENCE] - base
    paired_ours = _paired(results, PIPELINE, BARE)
    paired_stacked = _paired(results, STACKED, BARE)
    paired_pyres = _paired(results, PYRESILIENCE, BARE)
    ratio_stacked = statistics.median(
        s / o for s, o in zip(paired_stacked, paired_ours, strict=True)
    )
    ratio_pyres = statistics.median(p / o for p, o in zip(paired_pyres, paired_ours, strict=True))
    return "\n".join(
        [
            f"pipeline overhead: {ours:.2f} µs per call (median of rounds; per round "
            f"{min(paired_ours):.2f}-{max(paired_ours):.2f}); target <= 3.00 µs: "
            f"{_verdict(ours <= 3.0)}",
            f"tenacity + pybreaker / pipeline: {stacked / ours:.1f}x (paired {ratio_stacked:.1f}x);"
            f" target >= 8x: {_verdict(stacked / ours >= 8.0)}",
            f"pyresilience / pipeline: {pyres / ours:.1f}x (paired {ratio_pyres:.1f}x); "
            f"target > 1x: {_verdict(pyres > ours)}",
            f"check, CPU time (time descheduled taken out): pipeline "
            f"{cpu[PIPELINE] - cpu[BARE]:.2f} µs, tenacity {cpu[TENACITY] - cpu[BARE]:.1f} µs "
            f"(BENCHMARKING.md: {REFERENCE_TENACITY_US} µs on a quiet machine of this type)",
            f"check, least-disturbed round (the minimum, as timeit reports): pipeline "
            f"{min(paired_ours):.2f} µs, tenacity {min(_paired(results, TENACITY, BARE)):.1f} µs",
        ]
    )


def sleep_report(rows: list[tuple[str, float, float, list[float]]]) -> str:
    lines = [f"{'sleep calls per guarded call (each fails once)':<58} {'sync':>6} {'async':>6}"]
    for name, sync, asynchronous, delays in rows:
        seen = f"  asyncio.sleep delays seen: {delays}" if delays else ""
        lines.append(f"{name:<58} {sync:6.2f} {asynchronous:6.2f}{seen}")
    ours = next(row for row in rows if row[0] == OURS_RETRY)
    never = ours[1] == 0 and ours[2] == 0
    lines.append(f"we never call sleep(0): {'MET' if never else 'MISSED'}")
    return "\n".join(lines)


def profile_pipeline(calls: int = 200_000) -> str:
    """cProfile of the pipeline's success path: where each call's time goes (cProfile inflates
    every function call, so read the shares, not the absolute times)."""
    import cProfile
    import io
    import pstats

    guarded = _pipeline()(noop)

    def run() -> None:
        for i in range(calls):
            if guarded(i) != i:
                raise AssertionError("wrong result")

    profiler = cProfile.Profile()
    profiler.runcall(run)
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(16)
    return f"# {PIPELINE} on a no-op, {calls} calls\n{out.getvalue()}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks overhead", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a fast smoke run (a few seconds)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 15; quick 3)")
    parser.add_argument("--batch", type=int, help="calls per sample (default 10000; quick 2000)")
    parser.add_argument(
        "--profile", action="store_true", help="only profile the pipeline's success path"
    )
    args = parser.parse_args(argv)
    if args.profile:
        print(profile_pipeline())
        return
    rounds, batch, budget = (3, 2_000, 4.0) if args.quick else (15, 10_000, 120.0)
    rounds = args.rounds or rounds
    batch = args.batch or batch
    retry_batch = max(100, batch // 10)  # the peers' retry path costs ~100x the success path
    warnings.simplefilter("ignore")
    import stamina.instrumentation

    stamina.instrumentation.set_on_retry_hooks([])  # no logging of retries in the timed loops
    print(header(PEERS))
    print(
        f"# {rounds} interleaved rounds; {batch} calls per sample ({retry_batch} on the retry "
        f"path); median µs per call, min-max over rounds; x ours = overhead / our overhead\n"
    )
    sync = run_cases(success_cases(), rounds=rounds, batch=batch, max_seconds=budget)
    print(table(sync, baseline=BARE, ours=PIPELINE))
    print("\n" + summary(sync) + "\n")
    asyncs = run_cases(async_cases(), rounds=rounds, batch=batch, max_seconds=budget)
    print(table(asyncs, baseline=BARE_ASYNC, ours=PIPELINE_ASYNC))
    print()
    retry = run_cases(retry_cases(), rounds=rounds, batch=retry_batch, max_seconds=budget)
    print(table(retry, baseline=HAND_RETRY, ours=OURS_RETRY))
    print()
    aretry = run_cases(async_retry_cases(), rounds=rounds, batch=retry_batch, max_seconds=budget)
    print(table(aretry, baseline=HAND_RETRY, ours=OURS_RETRY))
    print()
    print(sleep_report(count_sleeps()))


if __name__ == "__main__":
    main(sys.argv[1:])
