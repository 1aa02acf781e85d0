"""``python -m benchmarks overload``: a real loopback server with fixed workers, driven past its
capacity by our client, with and without ``AdaptiveConcurrency``.

The server (``benchmarks._workers_server``, its own process) has 8 workers and lognormal service
times (median 200 ms, slept: the work costs no CPU, so a busy machine slows it little):
capacity ~35 requests/s. One asyncio client sends Poisson traffic, every
request with a 2 s deadline, first at 0.3 x capacity (the unloaded p99), then at 2 x capacity
through each configuration in turn, each against a fresh server process:

- ``bare``: ``httpx.AsyncClient.get`` under the deadline;
- ``adaptive``: the same call under ``AdaptiveConcurrency(WindowedLimit(VegasLimit(
  initial_limit=4)))`` (the deadline inside it, so a timeout counts as a drop): calls over the
  limit are refused at once, locally;
- ``fixed 16``: under ``Bulkhead(16)``, a fixed limit.

Columns: goodput (answers within the deadline per second, and as a share of capacity),
refused (shed locally), p50/p99 of the answered calls over the measured part (after a warm-up),
and p99 over the unloaded p99. Real processes and real time: numbers move from run to run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import math
import random
import statistics
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from benchmarks import _plots
from benchmarks._harness import Steps, header
from benchmarks._server import spawn
from resilience import (
    AdaptiveConcurrency,
    Bulkhead,
    BulkheadFullError,
    ConcurrencyLimitedError,
    VegasLimit,
    WindowedLimit,
)

WORKERS, MEDIAN, SIGMA = 8, 0.200, 0.5
CAPACITY = WORKERS / (MEDIAN * math.exp(SIGMA**2 / 2))
DEADLINE = 2.0
REFUSED = (ConcurrencyLimitedError, BulkheadFullError)
CLIENTS = 48  # httpx.AsyncClient pools of 8 connections each, taken in turn


@dataclass
class Run:
    name: str
    offered: int = 0
    answered: list[float] = field(default_factory=list)  # latencies, seconds
    refused: int = 0
    failed: int = 0
    seconds: float = 0.0


def workers_server() -> contextlib.AbstractContextManager[str]:
    """The fixed-workers server (``benchmarks._workers_server``) in its own process; its URL."""
    return spawn("benchmarks._workers_server", str(WORKERS), str(MEDIAN), str(SIGMA))


async def drive(
    name: str,
    call: Callable[[], Awaitable[object]],
    rate: float,
    seconds: float,
    warmup: float,
    rng: random.Random,
) -> Run:
    """Poisson arrivals at ``rate`` for ``seconds``; measure those after ``warmup``."""
    run = Run(name, seconds=seconds - warmup)
    tasks: set[asyncio.Task[None]] = set()
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def one(measured: bool) -> None:
        began = loop.time()
        try:
            async with asyncio.timeout(DEADLINE + 0.5):  # a net under the call's own deadline
                await call()
        except REFUSED:
            run.refused += measured
        except (TimeoutError, httpx.HTTPError):
            run.failed += measured
        else:
            if measured:
                run.answered.append(loop.time() - began)

    next_at = start
    while next_at - start < seconds:  # bounded: ``seconds`` of arrivals
        next_at += rng.expovariate(rate)
        await asyncio.sleep(max(0.0, next_at - loop.time()))
        measured = next_at - start >= warmup
        run.offered += measured
        task = loop.create_task(one(measured))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=DEADLINE + 5)
    return run


def percentile(latencies: list[float], q: int) -> float:
    if len(latencies) < 2:
        return math.nan
    return statistics.quantiles(latencies, n=100, method="inclusive")[q - 1]


def _ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.0f}"


def render(runs: list[Run], unloaded: Run) -> str:
    base = percentile(unloaded.answered, 99)
    lines = [
        f"capacity ~{CAPACITY:.0f} req/s ({WORKERS} workers, median {MEDIAN * 1000:.0f} ms); "
        f"unloaded (0.3 x): p50 {percentile(unloaded.answered, 50) * 1000:.0f} ms, "
        f"p99 {base * 1000:.0f} ms",
        "",
        "| at 2 x capacity | offered | goodput req/s | % capacity | refused | timed out "
        "| p50 ms | p99 ms | p99 / unloaded |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        goodput = len(run.answered) / run.seconds
        p50, p99 = percentile(run.answered, 50), percentile(run.answered, 99)
        ratio = "-" if math.isnan(p99) else f"{p99 / base:.1f}"
        lines.append(
            f"| {run.name} | {run.offered} | {goodput:.1f} | {goodput / CAPACITY:.0%} "
            f"| {run.refused} | {run.failed} | {_ms(p50)} | {_ms(p99)} | {ratio} |"
        )
    return "\n".join(lines)


async def measure_one(
    url: str, name: str, rate: float, seconds: float, warmup: float, seed: int
) -> Run:
    """One configuration against a fresh server (a backlog left by another would skew it)."""
    # Many small pools, not one big one: one httpx pool slows down past a few dozen connections
    # (BENCHMARKING.md), which would make the client, not the server, the bottleneck.
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(limits=httpx.Limits(max_connections=8), timeout=DEADLINE + 1)
            )
            for _ in range(CLIENTS)
        ]
        turn = itertools.cycle(clients)

        async def get() -> object:
            async with asyncio.timeout(DEADLINE):  # inside the policy: a timeout is a drop
                response = await next(turn).get(url)
            response.raise_for_status()
            return response

        call: Callable[[], Awaitable[object]] = get
        if name == "adaptive":
            call = AdaptiveConcurrency(
                WindowedLimit(VegasLimit(initial_limit=4)),
                on=(TimeoutError, httpx.TimeoutException),
            )(get)
        elif name == "fixed 16":
            call = Bulkhead(16)(get)
        return await drive(name, call, rate, seconds, warmup, random.Random(seed))


def measure(seconds: float, warmup: float, seed: int) -> tuple[list[Run], Run]:
    """The unloaded run, then each configuration at 2 x capacity, each on its own server."""
    found = []
    plan = (("unloaded", 0.3), ("bare", 2.0), ("adaptive", 2.0), ("fixed 16", 2.0))
    steps = Steps(len(plan), "configuration")
    for name, level in plan:
        with workers_server() as url:
            run = measure_one(url, name, level * CAPACITY, seconds, warmup, seed)
            found.append(asyncio.run(run))
        steps.done(name)
    return found[1:], found[0]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks overload", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="8 s per configuration")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    seconds = 8.0 if args.quick else args.seconds
    warmup = min(5.0, seconds / 3)
    print(header(["resilience", "httpx"]))
    runs, unloaded = measure(seconds, warmup, args.seed)
    print(render(runs, unloaded))
    _record(runs, unloaded)


def _record(runs: list[Run], unloaded: Run) -> None:
    """The table's two verdicts as charts, for ``--plots``: goodput and p99 over unloaded."""
    labels = {"adaptive": "ours: AdaptiveConcurrency (Vegas)", "fixed 16": "ours: Bulkhead(16)"}
    names = [labels.get(run.name, f"{run.name} httpx") for run in runs]
    base = percentile(unloaded.answered, 99)
    share = [100 * len(run.answered) / run.seconds / CAPACITY for run in runs]
    tails = [percentile(run.answered, 99) / base for run in runs]
    note = f"{WORKERS} workers, capacity ~{CAPACITY:.0f} req/s, offered 2 x capacity"
    _plots.record(_plots.Chart("goodput", "% of capacity", names, {"goodput": share}, note=note))
    _plots.record(
        _plots.Chart(
            "p99 of answered requests over the unloaded p99 (none answered: 0)",
            "x unloaded p99",
            names,
            {"p99 / unloaded": [0.0 if math.isnan(tail) else tail for tail in tails]},
            note=f"unloaded p99 {base * 1000:.0f} ms",
        )
    )
