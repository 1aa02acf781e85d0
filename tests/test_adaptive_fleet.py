"""The fleet simulator is deterministic for a seed, and its worlds behave as described.

The full runs and their numbers are in benchmarks/README.md; these are short ``--quick`` runs of
the cheap configurations (naive retries multiply the events by ~240).
"""

from __future__ import annotations

import pytest

from benchmarks._fleet_hedge import render_hedge, run_hedges
from benchmarks._fleet_report import render
from benchmarks._fleet_sim import ERROR, EXPIRED, OK, Leaf, Sim
from benchmarks.fleet import SCENARIOS, run_all

CHEAP = ("bare", "ours", "ours+adaptive")


def tables(seed: int) -> str:
    found = run_all(list(SCENARIOS), seed, quick=True, configs=CHEAP)
    text = [render(found[name], SCENARIOS[name], 0.05) for name in SCENARIOS]
    text.append(render_hedge(run_hedges(seed, quick=True)))
    return "\n\n".join(text)


@pytest.mark.examples
def test_the_same_seed_prints_the_same_tables() -> None:
    """Two runs with one seed print identical tables; another seed prints other numbers."""
    first = tables(7)
    assert first == tables(7)
    assert first != tables(8)


def test_ours_keeps_the_leaf_quiet_in_an_outage_where_naive_retries_multiply() -> None:
    """During a leaf outage our breakers send the leaf under one request per user request."""
    found = run_all(["outage"], 3, quick=True, configs=("bare", "ours"))["outage"]
    bare, ours = found
    assert bare.leaf_per_request == 1.0  # one attempt, and every request reaches the leaf
    assert ours.leaf_per_request < 1.0


def test_the_leaf_serves_fifo_drops_expired_requests_and_refuses_when_down() -> None:
    """The leaf's rules: workers, FIFO, deadlines checked when a worker takes a request."""
    sim = Sim("leaf-test")
    leaf = Leaf(sim, workers=1, median=0.010, sigma=0.0)
    answers: list[tuple[str, str, float]] = []
    for name, deadline in (("a", None), ("b", 0.005), ("c", None)):
        leaf.receive(deadline, lambda status, name=name: answers.append((name, status, sim.now())))
    sim.run(1.0)
    assert [(n, s) for n, s, _ in answers] == [("a", OK), ("b", EXPIRED), ("c", OK)]
    assert [round(t, 6) for n, s, t in answers if s == OK] == [0.01, 0.02]
    leaf.set_down(True)
    leaf.receive(None, lambda status: answers.append(("d", status, sim.now())))
    sim.run(2.0)
    assert answers[-1][:2] == ("d", ERROR) and leaf.expired == 1 and leaf.served == 2
