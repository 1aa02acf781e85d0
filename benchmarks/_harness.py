"""Timing helpers: interleaved rounds, bounded loops, medians, ratios and a machine header.

Machines here are shared and noisy (2 cores, ±30 % minute to minute), so every scenario runs
the baseline, us and the peers round robin in one process and reports medians and ratios.
"""

from __future__ import annotations

import asyncio
import datetime
import importlib.metadata
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

__all__ = ["Case", "Result", "header", "run_cases", "table"]


@dataclass
class Case:
    """One thing to time: ``call(i)`` must return ``expect(i)`` (checked inside the loop)."""

    name: str
    call: Callable[[int], object] | None = None
    acall: Callable[[int], Awaitable[object]] | None = None
    expect: Callable[[int], object] = lambda i: i
    group: str = ""


@dataclass
class Result:
    name: str
    group: str
    samples: list[float] = field(default_factory=list)  # µs per call, one per round

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


def _time_sync(case: Case, batch: int) -> float:
    call, expect = case.call, case.expect
    assert call is not None
    start = time.perf_counter_ns()
    for i in range(batch):
        if call(i) != expect(i):
            raise AssertionError(f"{case.name}: wrong result for {i}")
    return (time.perf_counter_ns() - start) / batch / 1000.0


def _time_async(case: Case, batch: int) -> float:
    acall, expect = case.acall, case.expect
    assert acall is not None

    async def loop() -> float:
        start = time.perf_counter_ns()
        for i in range(batch):
            if await acall(i) != expect(i):
                raise AssertionError(f"{case.name}: wrong result for {i}")
        return (time.perf_counter_ns() - start) / batch / 1000.0

    return asyncio.run(loop())


def run_cases(
    cases: Sequence[Case], *, rounds: int, batch: int, max_seconds: float
) -> list[Result]:
    """Warm each case up, then time them round robin; stop early past ``max_seconds``."""
    results = [Result(case.name, case.group) for case in cases]
    for case in cases:  # warm-up
        (_time_sync if case.call is not None else _time_async)(case, max(1, batch // 10))
    deadline = time.monotonic() + max_seconds
    for _ in range(rounds):
        for case, result in zip(cases, results, strict=True):
            timer = _time_sync if case.call is not None else _time_async
            result.samples.append(timer(case, batch))
        if time.monotonic() > deadline:
            break
    return results


def header(packages: Sequence[str]) -> str:
    versions = []
    for name in packages:
        try:
            versions.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    return (
        f"# {datetime.date.today().isoformat()}  {platform.machine()}  {os.cpu_count()} CPUs  "
        f"Python {sys.version.split()[0]} ({platform.python_implementation()})\n"
        f"# {', '.join(versions)}"
    )


def table(results: Sequence[Result], *, baseline: str, ours: str) -> str:
    """Median µs per call, overhead over the baseline, min-max, and ratio to ``ours``."""
    by_name = {result.name: result for result in results}
    base = by_name[baseline].median
    reference = by_name[ours].median - base if ours in by_name else None
    lines = [f"{'case':<44} {'µs/call':>9} {'overhead':>9} {'min-max':>15} {'x ours':>8}"]
    group = None
    for result in results:
        if result.group != group:
            group = result.group
            if group:
                lines.append(f"-- {group}")
        overhead = result.median - base
        ratio = f"{overhead / reference:8.1f}" if reference and result.name != baseline else " " * 8
        spread = f"{min(result.samples):.2f}-{max(result.samples):.2f}"
        lines.append(f"{result.name:<44} {result.median:9.2f} {overhead:9.2f} {spread:>15} {ratio}")
    return "\n".join(lines)
