"""Hedging at a percentile, within a budget, on the fleet's simulated clock.

One client sends Poisson traffic to a server whose latency has a slow tail: 95 % of answers
are lognormal around ``FAST`` and 5 % around ``SLOW`` (each request draws its own; a copy draws
again, as a second replica would). Configurations:

- ``unhedged``: one request each.
- ``fixed``: a copy after a fixed delay (the p95 of the unshifted distribution), no budget —
  today's ``Hedge(delay)``.
- ``p95``: ``Hedge(delay="p95")`` with its defaults: a copy after the p95 of the last 30 s of
  latencies (warm-up 20, floor 1 ms), only when its budget grants it (extras <= 5 % of first
  calls, no floor).

Each call runs the hedge's own race (``Hedge._race``: the ``Race`` core, or the
``TrackedRace`` with the tracker and the budget), fed on the simulated clock what the shells
would feed it: the copies' answers and the timers' ticks.

The first answer wins and the other copy is abandoned. With ``shift`` every latency is x3 from
the middle of the run on: a fixed delay then hedges nearly every request, the budget does not
let the percentile's lag do the same.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from benchmarks._fleet_sim import Sim
from resilience import Hedge
from resilience._hedge.race import Item, Race
from resilience._hedge.tracked import TrackedRace

__all__ = ["HEDGE_CONFIGS", "HedgeResult", "render_hedge", "run_hedge", "run_hedges"]

FAST, SLOW, SIGMA, SLOW_SHARE = 0.010, 0.500, 0.3, 0.05
RATE = 200.0  # requests per second
HEDGE_CONFIGS = ("unhedged", "fixed", "p95")
FIXED_DELAY = FAST * math.exp(SIGMA * 1.645)  # the fast body's p95: tuned for the start


@dataclass
class HedgeResult:
    config: str
    shift: bool
    requests: int
    extras: int
    p50: float
    p99: float


def run_hedge(config: str, seed: int, *, shift: bool, quick: bool = False) -> HedgeResult:
    """One configuration's run; deterministic for ``seed``."""
    sim = Sim(f"{seed}/hedge/{config}/{shift}")
    draw = sim.child_rng("latency")
    arrivals = sim.child_rng("arrivals")
    duration = 20.0 if quick else 60.0
    hedge = None
    if config == "fixed":
        hedge = Hedge(FIXED_DELAY, clock=sim.clock)
    elif config == "p95":
        hedge = Hedge("p95", clock=sim.clock)  # its own budget: extras <= 5 % of first calls
    latencies: list[float] = []
    extras = 0

    def latency() -> float:
        median = SLOW if draw.random() < SLOW_SHARE else FAST
        scale = 3.0 if shift and sim.now() >= duration / 2 else 1.0
        return median * scale * math.exp(SIGMA * draw.gauss(0.0, 1.0))

    def start() -> None:
        """One call: the hedge's own race (``Hedge._race``) fed what happens, as its shells
        feed it (``Hedge._start``: the budget, then the copy and its timer)."""
        started = sim.now()
        race = hedge._race() if hedge is not None else Race(0.0, 1, bool, print)

        def begin() -> None:
            nonlocal extras
            if isinstance(race, TrackedRace) and not race.may_launch():
                return  # the budget refused this copy
            delay = race.launch()
            if delay is not None:
                sim.at(delay, feed, race.launched)
            extras += race.launched > 1
            sim.at(latency(), feed, (True, "ok"))

        def feed(item: Item) -> None:
            if race.decided:
                race.late(item)
                return
            if race.step(item):
                begin()
            if race.decided:
                latencies.append(sim.now() - started)

        begin()

    def arrive() -> None:
        start()
        gap = arrivals.expovariate(RATE)
        if sim.now() + gap < duration:
            sim.at(gap, arrive)

    sim.at(0.0, arrive)
    sim.run(duration + 10.0)
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return HedgeResult(config, shift, len(latencies), extras, cuts[49], cuts[98])


def render_hedge(results: list[HedgeResult]) -> str:
    """The hedging table (the same seed gives the same text)."""
    lines = [
        f"## hedge: {SLOW_SHARE:.0%} of answers ~{SLOW * 1000:.0f} ms, the rest "
        f"~{FAST * 1000:.0f} ms; {RATE:.0f} req/s; fixed delay {FIXED_DELAY * 1000:.1f} ms",
        "",
        "| config | latency x3 mid-run | requests | extra requests | p50 ms | p99 ms |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.config} | {'yes' if r.shift else 'no'} | {r.requests} "
            f"| {r.extras / r.requests:.1%} | {r.p50 * 1000:.1f} | {r.p99 * 1000:.1f} |"
        )
    return "\n".join(lines)


def run_hedges(seed: int, quick: bool) -> list[HedgeResult]:
    """Every hedging configuration, with steady latency and with the mid-run shift."""
    return [
        run_hedge(config, seed, shift=shift, quick=quick)
        for shift in (False, True)
        for config in HEDGE_CONFIGS
    ]
