"""``python -m benchmarks fleet``: five layers of services under a leaf outage, a brownout, an
overload and a load spike, each client configuration side by side, on a simulated clock.

A discrete-event simulation (``benchmarks._fleet_sim``) runs our real policy cores — ``Retry``'s
decision core, ``RetryBudget``, ``CircuitBreaker``, ``AdaptiveConcurrency``,
``AdaptiveThrottle``, ``Bulkhead`` — on a ``FakeClock``: the same objects and steps the
policies' shells call, not models of them. Users send Poisson traffic into a client tier; four
middle tiers each call the next; the leaf is a database with fixed workers, a FIFO queue and
lognormal service times. Every user request has a 1 s deadline. The same seed prints the same
tables (a test checks it); ``--plots DIR`` also writes one SVG per scenario (matplotlib) and
the results it is drawn from (JSON; ``--replot DIR`` draws the SVGs again from them).

Scenarios (``capacity`` = the leaf's workers / mean service time):
- ``outage``: 0.5 x capacity; the leaf refuses connections for the incident.
- ``brownout``: 0.5 x capacity; the leaf's service times x5 for the incident.
- ``overload``: 2 x capacity throughout (measured after a warm-up).
- ``recovery``: 0.5 x capacity with a 2 x capacity spike for the incident.
Hedging is its own scenario: ``benchmarks._fleet_hedge``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from benchmarks import _plots
from benchmarks._fleet_clients import CONFIGS, Config, HopClient
from benchmarks._fleet_hedge import HedgeResult, render_hedge, run_hedges
from benchmarks._fleet_report import Result, render, render_targets, report_header
from benchmarks._fleet_sim import Leaf, Middle, Sim, Target, Users
from benchmarks._harness import Steps

__all__ = ["SCENARIOS", "Scenario", "main", "run_all", "run_scenario", "unloaded_p99"]

HOPS = 5  # calling layers: the client tier and four middle tiers
DEADLINE = 1.0  # every user request's deadline, seconds
BUCKET = 1.0  # width of the time series' buckets, seconds
QUICK_TIME, QUICK_WORKERS = 0.25, 1  # --quick: a quarter of the time, one leaf worker


@dataclass(frozen=True)
class Scenario:
    """What happens to the fleet: the load over time, and an incident at the leaf."""

    name: str
    duration: float
    incident: tuple[float, float]  # start and end, seconds
    load: Callable[[float, bool], float]  # (t, during the incident) -> x capacity
    fault: str  # down | slow | none
    configs: tuple[str, ...]


def _steady(level: float) -> Callable[[float, bool], float]:
    return lambda t, incident: level


def _spike(base: float, peak: float) -> Callable[[float, bool], float]:
    return lambda t, incident: peak if incident else base


MAIN = ("bare", "naive", "tenacity", "ours", "ours+adaptive", "ours+adaptive/all-5xx")
SCENARIOS = {
    scenario.name: scenario
    for scenario in (
        Scenario("outage", 50.0, (10.0, 30.0), _steady(0.5), "down", MAIN),
        Scenario("brownout", 60.0, (10.0, 30.0), _steady(0.5), "slow", MAIN),
        Scenario(
            "overload",
            40.0,
            (10.0, 40.0),
            _steady(2.0),
            "none",
            (*MAIN, "ours+gradient2", "ours+fixed"),
        ),
        Scenario("recovery", 50.0, (10.0, 20.0), _spike(0.5, 2.0), "none", MAIN),
    )
}


def build(sim: Sim, config: Config, leaf: Leaf) -> list[HopClient]:
    """The chain of clients: hop 0 (the client tier) to hop ``HOPS - 1`` (calls the leaf)."""
    clients: list[HopClient] = []
    target: Target = leaf
    for hop in reversed(range(HOPS)):
        client = HopClient(sim, target, config, f"{config.name}/hop{hop}", hop == HOPS - 1)
        clients.insert(0, client)
        target = Middle(sim, client)
    return clients


def run_scenario(scenario: Scenario, config: Config, seed: int, *, quick: bool = False) -> Result:
    """Run one configuration through one scenario; deterministic for ``seed``."""
    scale = QUICK_TIME if quick else 1.0
    duration = scenario.duration * scale
    start, end = (edge * scale for edge in scenario.incident)
    sim = Sim(f"{seed}/{scenario.name}/{config.name}")
    leaf = Leaf(sim, workers=QUICK_WORKERS if quick else 4, median=0.020, sigma=0.5)
    capacity = leaf.capacity
    clients = build(sim, config, leaf)

    def rate(t: float) -> float:
        return scenario.load(t, start <= t < end) * capacity

    users = Users(sim, clients[0], rate, DEADLINE, propagate=config.ours)
    if scenario.fault == "down":
        sim.at(start, leaf.set_down, True)
        sim.at(end, leaf.set_down, False)
    elif scenario.fault == "slow":
        sim.at(start, setattr, leaf, "slowdown", 5.0)
        sim.at(end, setattr, leaf, "slowdown", 1.0)
    buckets = math.ceil(duration / BUCKET)
    leaf_counts = [0] * (buckets + 1)

    def sample(index: int) -> None:
        leaf_counts[index] = leaf.received
        if index < buckets:
            sim.at(BUCKET, sample, index + 1)

    sample(0)
    at_edges: list[int] = []  # requests the leaf had received when the incident began and ended
    sim.at(start, lambda: at_edges.append(leaf.received))
    sim.at(end, lambda: at_edges.append(leaf.received))
    users.start(duration)
    sim.run(duration + DEADLINE + 0.5)
    if len(at_edges) < 2:  # the incident lasts to the end of the run
        at_edges.append(leaf.received)
    leaf_in_incident = at_edges[1] - at_edges[0]
    return _summarise(
        scenario, config, users, leaf_counts, leaf_in_incident, capacity, (start, end), duration
    )


def _summarise(
    scenario: Scenario,
    config: Config,
    users: Users,
    leaf_counts: list[int],
    leaf_in_incident: int,
    capacity: float,
    incident: tuple[float, float],
    duration: float,
) -> Result:
    start, end = incident
    result = Result(scenario.name, config.name, capacity, incident=(start, end))
    buckets = len(leaf_counts) - 1
    offered = [0] * buckets
    good = [0] * buckets
    for outcome in users.outcomes:
        index = min(buckets - 1, int(outcome.arrived / BUCKET))
        offered[index] += 1
        good[index] += outcome.ok
    result.series_offered = [float(n) / BUCKET for n in offered]
    result.series_goodput = [float(n) / BUCKET for n in good]
    result.series_leaf = [(leaf_counts[i + 1] - leaf_counts[i]) / BUCKET for i in range(buckets)]
    last = int(end / BUCKET)
    window = [o for o in users.outcomes if start <= o.arrived < end]
    result.users = len(window)
    ok = [o.latency for o in window if o.ok]
    result.successes = len(ok)
    result.goodput = len(ok) / (end - start)
    result.leaf_per_request = leaf_in_incident / max(1, len(window))
    if len(ok) >= 2:
        cuts = statistics.quantiles(ok, n=100, method="inclusive")
        result.p50, result.p99 = cuts[49], cuts[98]
    if end < duration:  # the incident ended during the run: how long until users were fine
        result.recovered_after = _recovery(offered, good, last)
    return result


def _recovery(offered: list[int], good: list[int], after: int) -> float | None:
    """Seconds from bucket ``after`` until every later bucket has >= 95 % of its requests
    succeed (the last bucket, cut short by the run's end, excluded); ``None``: never."""
    healthy_from = None
    for index in range(after, len(offered) - 1):
        fine = offered[index] == 0 or good[index] >= 0.95 * offered[index]
        if fine and healthy_from is None:
            healthy_from = index
        elif not fine:
            healthy_from = None
    return None if healthy_from is None else (healthy_from - after) * BUCKET


def unloaded_p99(seed: int, quick: bool) -> float:
    """The p99 of the bare fleet at 0.3 x capacity: the yardstick for admitted requests."""
    scenario = Scenario("unloaded", 20.0, (2.0, 20.0), _steady(0.3), "none", ("bare",))
    return run_scenario(scenario, CONFIGS["bare"], seed, quick=quick).p99


def run_all(
    names: Sequence[str],
    seed: int,
    quick: bool,
    configs: Sequence[str] | None = None,
    steps: Steps | None = None,
) -> dict[str, list[Result]]:
    """Every configuration (or those in ``configs``) of every named scenario, in order; each
    finished one is a step of ``steps`` (a progress line)."""
    found: dict[str, list[Result]] = {}
    for name in names:
        found[name] = []
        for config in SCENARIOS[name].configs:
            if configs is None or config in configs:
                found[name].append(
                    run_scenario(SCENARIOS[name], CONFIGS[config], seed, quick=quick)
                )
                if steps is not None:
                    steps.done(f"{name}: {config}")
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks fleet", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter runs, a smaller leaf")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scenario", action="append", choices=[*SCENARIOS, "hedge"])
    parser.add_argument(
        "--plots", metavar="DIR", help="write one SVG per scenario here, and its results (JSON)"
    )
    parser.add_argument(
        "--replot", metavar="DIR", help="simulate nothing: draw DIR's SVGs again from its JSON"
    )
    args = parser.parse_args(argv)
    if args.replot:
        from benchmarks._fleet_plot import replot

        for path in replot(args.replot):
            print(f"# plot: {path}")
        return
    stamp = _plots.stamp()  # the run's date and machine, for its plots
    names = args.scenario or [*SCENARIOS, "hedge"]
    print(report_header(args.seed, args.quick))
    found: dict[str, list[Result]] = {}
    hedges: list[HedgeResult] = []
    reference = unloaded_p99(args.seed, args.quick)
    total = sum(1 if name == "hedge" else len(SCENARIOS[name].configs) for name in names)
    steps = Steps(total, "run")
    for name in names:
        started = time.perf_counter()
        print()
        if name == "hedge":
            hedges = run_hedges(args.seed, args.quick)
            steps.done("hedge")
            print(render_hedge(hedges))
        else:
            found[name] = results = run_all([name], args.seed, args.quick, steps=steps)[name]
            print(render(results, SCENARIOS[name], reference))
            if args.plots:
                from benchmarks._fleet_plot import plot, save_results

                print(f"# results: {save_results(results, name, args.plots, stamp)}")
                print(f"# plot: {plot(results, name, args.plots, stamp)}")
        print(f"# {name}: simulated in {time.perf_counter() - started:.1f} s of wall time")
    print()
    print(render_targets(found, hedges, reference))
