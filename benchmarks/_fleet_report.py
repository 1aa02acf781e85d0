"""The fleet simulator's results: one row per configuration, the tables, and the targets."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from benchmarks._fleet_clients import OPEN_FOR

if TYPE_CHECKING:
    from benchmarks._fleet_hedge import HedgeResult
    from benchmarks.fleet import Scenario

__all__ = ["Result", "render", "render_targets", "report_header"]


@dataclass
class Result:
    """One configuration's run of one scenario (summary columns over the incident window)."""

    scenario: str
    config: str
    capacity: float
    users: int = 0
    successes: int = 0
    goodput: float = 0.0  # successes per second
    leaf_per_request: float = 0.0  # requests reaching the leaf per user request
    p50: float = math.nan  # latency of successful requests, seconds
    p99: float = math.nan
    recovered_after: float | None = None  # seconds after the incident ended; None: never
    incident: tuple[float, float] = (0.0, 0.0)  # as run (--quick shortens it), seconds
    series_offered: list[float] = field(default_factory=list)  # per second of the run
    series_goodput: list[float] = field(default_factory=list)
    series_leaf: list[float] = field(default_factory=list)


def report_header(seed: int, quick: bool) -> str:
    from benchmarks.fleet import DEADLINE, HOPS, QUICK_TIME, QUICK_WORKERS

    size = f" (--quick: {QUICK_TIME:g} x the time, {QUICK_WORKERS} leaf worker)" if quick else ""
    return (
        f"# fleet simulation, seed {seed}{size}; {HOPS} calling layers; user deadline "
        f"{DEADLINE:g} s; breakers open for {OPEN_FOR:g} s"
    )


def _ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.0f}"


def render(results: Sequence[Result], scenario: Scenario, unloaded_p99: float) -> str:
    """The scenario's table (the same seed gives the same text)."""
    capacity = results[0].capacity
    start, end = scenario.incident
    lines = [
        f"## {scenario.name}: {scenario.load(0.0, True):g} x capacity in the incident, "
        f"{scenario.load(0.0, False):g} x outside ({capacity:.0f} req/s); fault: "
        f"{scenario.fault}; incident {start:g}-{end:g} s of {scenario.duration:g} s (full length)",
        f"(unloaded p99: {_ms(unloaded_p99)} ms; columns cover requests arriving in the incident)",
        "",
        "| config | users | success | goodput req/s | % capacity | leaf req / user req "
        "| p50 ms | p99 ms | p99 / unloaded | recovered after s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        success = r.successes / r.users if r.users else 0.0
        if r.recovered_after is not None:
            recovered = f"{r.recovered_after:.0f}"
        else:
            recovered = "-" if end >= scenario.duration else "never"
        ratio = "-" if math.isnan(r.p99) else f"{r.p99 / unloaded_p99:.1f}"
        lines.append(
            f"| {r.config} | {r.users} | {success:.1%} | {r.goodput:.1f} "
            f"| {r.goodput / capacity:.0%} | {r.leaf_per_request:.2f} | {_ms(r.p50)} "
            f"| {_ms(r.p99)} | {ratio} | {recovered} |"
        )
    return "\n".join(lines)


def _find(results: Sequence[Result], config: str) -> Result | None:
    return next((r for r in results if r.config == config), None)


def render_targets(
    found: dict[str, list[Result]], hedges: Sequence[HedgeResult], unloaded_p99: float
) -> str:
    """The issue's targets, each with the measured value and whether it holds."""
    lines = ["## targets", ""]

    def check(label: str, value: str, holds: bool) -> None:
        lines.append(f"- {'holds' if holds else 'MISSED'}: {label}: {value}")

    outage = found.get("outage", [])
    ours = _find(outage, "ours")
    naive = _find(outage, "naive")
    if ours is not None:
        extra = f" (naive: {naive.leaf_per_request:.0f}x)" if naive else ""
        check(
            "leaf outage, leaf requests per user request with ours <= 1.5",
            f"{ours.leaf_per_request:.2f}{extra}",
            ours.leaf_per_request <= 1.5,
        )
    overload = found.get("overload", [])
    adaptive = _find(overload, "ours+adaptive")
    if adaptive is not None:
        share = adaptive.goodput / adaptive.capacity
        check(
            "overload 2x, goodput with adaptive concurrency >= 90 % of capacity",
            f"{share:.0%}",
            share >= 0.9,
        )
        ratio = adaptive.p99 / unloaded_p99
        check(
            "overload 2x, p99 of admitted requests <= 2 x unloaded p99",
            f"{ratio:.2f} x",
            ratio <= 2.0,
        )
    for config in ("ours", "ours+adaptive"):
        brownout = _find(found.get("brownout", []), config)
        if brownout is not None:
            after = brownout.recovered_after
            check(
                f"brownout, {config} back to 95 % success within 2 x open_for ({2 * OPEN_FOR:g} s)",
                "never" if after is None else f"{after:g} s",
                after is not None and after <= 2 * OPEN_FOR,
            )
    by_key = {(h.config, h.shift): h for h in hedges}
    plain, p95, shifted = (
        by_key.get(("unhedged", False)),
        by_key.get(("p95", False)),
        by_key.get(("p95", True)),
    )
    if plain and p95 and shifted:
        check(
            "hedge p95, p99 <= 1/10 of unhedged",
            f"1/{plain.p99 / p95.p99:.1f}",
            p95.p99 * 10 <= plain.p99,
        )
        for result in (p95, shifted):
            share = result.extras / result.requests
            label = "latency x3 mid-run" if result.shift else "steady latency"
            check(f"hedge p95, extra requests <= 5 % ({label})", f"{share:.2%}", share <= 0.05)
    return "\n".join(lines)
