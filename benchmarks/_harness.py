"""Timing helpers: interleaved rounds, bounded loops, medians, ratios and a machine header.

Machines here are shared and noisy (2 cores, ±30 % minute to minute), so every scenario runs
the baseline, us and the peers round robin in one process and reports medians and ratios:

- every case is warmed up first;
- each round times every case once (one *sample*: ``batch`` calls, timed with
  ``time.perf_counter_ns``), starting from a different case each round so that no case always
  runs right after the same neighbour;
- every loop is bounded in count (``batch`` calls per sample, ``rounds`` rounds) **and** in time
  (a sample stops early after ``sample_seconds``; no new round starts after ``max_seconds``);
- every call's result is checked inside the timed loop (a fast wrong answer raises).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib.metadata
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from benchmarks import _plots

__all__ = [
    "Case",
    "Result",
    "Steps",
    "count_builtin_calls",
    "header",
    "paired",
    "patched",
    "run_cases",
    "sizes",
    "table",
]

_NS = 1_000_000_000


def _identity(i: int) -> object:
    return i


@dataclass
class Case:
    """One thing to time: ``call(i)`` (or ``await acall(i)``) must return ``expect(i)``."""

    name: str
    call: Callable[[int], object] | None = None
    acall: Callable[[int], Awaitable[object]] | None = None
    expect: Callable[[int], object] = _identity
    group: str = ""

    def __post_init__(self) -> None:
        if (self.call is None) == (self.acall is None):
            raise ValueError(f"{self.name}: give exactly one of call and acall")


@dataclass
class Result:
    """The samples of one case: µs per call, one per round."""

    name: str
    group: str
    samples: list[float] = field(default_factory=list)
    cpu_samples: list[float] = field(default_factory=list)
    """The same samples in this thread's CPU time: what is left once time spent descheduled
    (another process on our core) is taken out. Wall time is the measure; this is a check."""

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu_samples)

    @property
    def low(self) -> float:
        return min(self.samples)

    @property
    def high(self) -> float:
        return max(self.samples)


def _chunk(batch: int) -> int:
    """Calls between two clock reads inside a sample: enough to make the read negligible."""
    return max(1, min(1_000, batch // 20))


def _time_sync(case: Case, batch: int, limit_ns: int) -> tuple[int, int, int]:
    """(wall ns, CPU ns, calls) over ``batch`` calls, or fewer if ``limit_ns`` runs out first."""
    call, expect, name = case.call, case.expect, case.name
    assert call is not None
    chunk = _chunk(batch)
    clock, cpu_clock = time.perf_counter_ns, time.thread_time_ns
    cpu_start = cpu_clock()
    start = clock()
    stop_at = start + limit_ns
    done = 0
    while done < batch:
        upto = min(batch, done + chunk)
        for i in range(done, upto):
            if call(i) != expect(i):
                raise AssertionError(f"{name}: wrong result for call {i}")
        done = upto
        if clock() > stop_at:
            break
    return clock() - start, cpu_clock() - cpu_start, done


async def _time_async(case: Case, batch: int, limit_ns: int) -> tuple[int, int, int]:
    """The same as ``_time_sync`` for a coroutine function, on the running event loop."""
    acall, expect, name = case.acall, case.expect, case.name
    assert acall is not None
    chunk = _chunk(batch)
    clock, cpu_clock = time.perf_counter_ns, time.thread_time_ns
    cpu_start = cpu_clock()
    start = clock()
    stop_at = start + limit_ns
    done = 0
    while done < batch:
        upto = min(batch, done + chunk)
        for i in range(done, upto):
            if await acall(i) != expect(i):
                raise AssertionError(f"{name}: wrong result for call {i}")
        done = upto
        if clock() > stop_at:
            break
    return clock() - start, cpu_clock() - cpu_start, done


async def _time(case: Case, batch: int, limit_ns: int) -> tuple[int, int, int]:
    if case.call is not None:
        return _time_sync(case, batch, limit_ns)
    return await _time_async(case, batch, limit_ns)


def run_cases(
    cases: Sequence[Case],
    *,
    rounds: int,
    batch: int,
    max_seconds: float,
    sample_seconds: float = 2.0,
    slices: int = 1,
    title: str | None = None,
) -> list[Result]:
    """Warm each case up, then time them round robin for ``rounds`` rounds.

    With ``slices`` > 1 each sample is cut into that many slices and the cases take turns
    slice by slice, so the samples of one round are taken under the same load (for ratios of
    a few per cent, where seconds-apart samples drift more than the effect measured).
    No round starts after ``max_seconds`` (every case keeps the same number of samples, so
    per-round pairs stay aligned); a sample stops early after ``sample_seconds``. All cases
    run on one event loop (async ones awaited, sync ones called), so async clients keep their
    connections from round to round.

    Each round prints a progress line on stderr (the time left); the medians are recorded for
    the scenario's plot under ``title`` (default: the first case's group, or "table N").
    """
    if rounds < 1 or batch < 1 or slices < 1:
        raise ValueError("rounds, batch and slices must be >= 1")
    results = asyncio.run(_run(cases, rounds, batch, max_seconds, sample_seconds, slices))
    _plots.record(
        _plots.Chart(
            title=title or (cases[0].group if cases and cases[0].group else "µs per call"),
            unit="µs per call (median; whiskers: min-max over rounds)",
            labels=[result.name for result in results],
            series={"median": [result.median for result in results]},
            spread=[(result.low, result.high) for result in results],
            note=f"{len(results[0].samples) if results else 0} rounds of {batch} calls",
        )
    )
    return results


class Steps:
    """A line per finished step on stderr, for runs made of a few long steps (the fleet's
    configurations, the overload's servers): steps done, time spent, and the time left at the
    mean step's pace."""

    def __init__(self, total: int, what: str) -> None:
        self.total = total
        self.what = what
        self.count = 0
        self.started = time.monotonic()

    def done(self, label: str) -> None:
        self.count += 1
        spent = time.monotonic() - self.started
        left = (self.total - self.count) * spent / self.count
        step = f"{self.what} {self.count}/{self.total} ({label})"
        print(f"  {step}  {spent:6.1f} s  ~{left:4.0f} s left", file=sys.stderr, flush=True)


class _Progress:
    """A line per round on stderr: rounds done, time spent, an estimate of the time left (the
    rounds to go at the mean round's pace, capped by the time budget: a round started before
    the budget runs out is finished)."""

    def __init__(self, rounds: int, max_seconds: float) -> None:
        self.rounds = rounds
        self.max_seconds = max_seconds
        self.started = time.monotonic()
        self.live = sys.stderr.isatty()

    def round_done(self, done: int) -> None:
        spent = time.monotonic() - self.started
        pace = spent / done
        left = min((self.rounds - done) * pace, max(0.0, self.max_seconds - spent) + pace)
        line = f"  round {done}/{self.rounds}  {spent:5.1f} s  ~{left:4.0f} s left"
        if done == self.rounds or spent > self.max_seconds:
            line = f"  {done} rounds in {spent:.1f} s" + " " * 12
        end = "\r" if self.live and done < self.rounds and spent <= self.max_seconds else "\n"
        print(line, end=end, file=sys.stderr, flush=True)


async def _run(
    cases: Sequence[Case],
    rounds: int,
    batch: int,
    max_seconds: float,
    sample_seconds: float,
    slices: int,
) -> list[Result]:
    limit_ns = int(sample_seconds * _NS) // slices
    per_slice = max(1, batch // slices)
    results = [Result(case.name, case.group) for case in cases]
    for case in cases:  # warm-up: caches, lazy imports, specialised bytecode
        await _time(case, max(1, batch // 10), int(sample_seconds * _NS) // 4)
    deadline = time.monotonic() + max_seconds
    progress = _Progress(rounds, max_seconds)
    count = len(cases)
    for round_number in range(rounds):
        totals = [[0, 0, 0] for _ in cases]
        for slice_number in range(slices):
            for k in range(count):
                # rotate the starting case every round and every slice
                index = (round_number + slice_number + k) % count
                wall, cpu, done = await _time(cases[index], per_slice, limit_ns)
                total = totals[index]
                total[0] += wall
                total[1] += cpu
                total[2] += done
        for result, (wall, cpu, done) in zip(results, totals, strict=True):
            result.samples.append(wall / done / 1000.0)
            result.cpu_samples.append(cpu / done / 1000.0)
        progress.round_done(round_number + 1)
        if time.monotonic() > deadline:
            break
    return results


def paired(results: Sequence[Result], baseline: str, other: str) -> float:
    """``other``'s throughput relative to ``baseline``'s: the median of the per-round ratios
    baseline time / other time (each round times every case under the same load)."""
    samples = {result.name: result.samples for result in results}
    return statistics.median(b / o for b, o in zip(samples[baseline], samples[other], strict=True))


def count_builtin_calls(target: Callable[..., object], run: Callable[[], object]) -> int:
    """How many times ``run()`` calls the C function ``target`` (e.g. ``time.sleep``), by any
    route: a profiler hook sees calls through aliases bound at import time too."""
    calls = 0

    def profile(frame: object, event: str, arg: object) -> None:
        nonlocal calls
        if event == "c_call" and arg is target:
            calls += 1

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        run()
    finally:
        sys.setprofile(previous)
    return calls


@contextmanager
def patched(owner: object, name: str, replacement: object) -> Iterator[None]:
    """Temporarily replace ``owner.name`` (for counting calls outside timed loops)."""
    original = getattr(owner, name)
    setattr(owner, name, replacement)
    try:
        yield
    finally:
        setattr(owner, name, original)


def sizes(
    argv: list[str] | None,
    description: str | None,
    *,
    quick: tuple[int, int, float],
    full: tuple[int, int, float],
) -> tuple[int, int, float]:
    """Parse a scenario's one option, ``--quick``; return its ``(rounds, batch, max_seconds)``,
    ``quick`` or ``full``. Also silences warnings: the peers' deprecation notices would land in
    the middle of the tables."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a fast smoke run")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    return quick if args.quick else full


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# Import names whose distribution on the package index is named otherwise.
_DISTRIBUTIONS = {"resilience": "resilience-patterns"}


def header(packages: Sequence[str]) -> str:
    """Date, machine, load, Python and the versions of ``packages`` (importlib.metadata)."""
    versions = []
    for name in packages:
        try:
            distribution = _DISTRIBUTIONS.get(name, name)
            versions.append(f"{name} {importlib.metadata.version(distribution)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load = "n/a"
    if hasattr(os, "getloadavg"):
        load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    return (
        f"# {now}  {os.cpu_count()} CPUs ({_cpu_model()}, {platform.machine()})  "
        f"load {load}\n"
        f"# Python {sys.version.split()[0]} ({platform.python_implementation()}, "
        f"{platform.python_compiler()})\n"
        f"# {', '.join(versions)}"
    )


def table(results: Sequence[Result], *, baseline: str, ours: str) -> str:
    """Median µs per call, overhead over the baseline, min-max, overhead ratio to ``ours``, and
    the overhead in CPU time (``cpu ovh``: the same, with time spent descheduled taken out)."""
    by_name = {result.name: result for result in results}
    base = by_name[baseline].median
    cpu_base = by_name[baseline].cpu_median
    reference = by_name[ours].median - base if ours in by_name else None
    width = max(44, *(len(result.name) + 1 for result in results))
    lines = [
        f"{'case':<{width}} {'µs/call':>9} {'overhead':>9} {'min-max':>15} {'x ours':>8} "
        f"{'cpu ovh':>8}"
    ]
    group = None
    for result in results:
        if result.group != group:
            group = result.group
            if group:
                lines.append(f"-- {group}")
        overhead = result.median - base
        ratio = " " * 8
        if reference and reference > 0 and result.name != baseline:
            ratio = f"{overhead / reference:8.1f}"
        spread = f"{result.low:.2f}-{result.high:.2f}"
        cpu = result.cpu_median - cpu_base
        lines.append(
            f"{result.name:<{width}} {result.median:9.2f} {overhead:9.2f} {spread:>15} {ratio} "
            f"{cpu:8.2f}"
        )
    return "\n".join(lines)
