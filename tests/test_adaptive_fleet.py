"""The fleet simulator is deterministic for a seed, and its worlds behave as described.

The full runs and their numbers are in benchmarks/README.md; these are short ``--quick`` runs of
the cheap configurations (naive retries multiply the events by ~240).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from benchmarks._fleet_clients import CONFIGS, GATES, HopClient
from benchmarks._fleet_hedge import render_hedge, run_hedges
from benchmarks._fleet_report import render
from benchmarks._fleet_sim import ERROR, EXPIRED, OK, OVERLOADED, UNREACHABLE, Leaf, Sim
from benchmarks.fleet import SCENARIOS, run_all
from resilience import (
    AdaptiveConcurrency,
    AdaptiveThrottle,
    Bulkhead,
    CircuitBreaker,
    Hedge,
    Retry,
)
from resilience.http._options import TransportOptions
from resilience.http._origins import Origins, Verdicts
from resilience.testing import FakeClock

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
    assert answers[-1][:2] == ("d", UNREACHABLE) and leaf.expired == 1 and leaf.served == 2


def test_the_fleet_passes_the_gates_in_the_order_the_http_transports_build_them() -> None:
    """The simulated hop's gates (GATES) are the transport's per-origin stack, in its order:
    Retry (and Hedge) outside, then throttle, limiter, breaker, bulkhead. Fails when either
    side changes its order."""
    pipelines: list[Any] = []

    def send(request: object) -> None:
        return None

    def wrap(pipeline: object) -> Callable[[object], None]:
        pipelines.append(pipeline)
        return send

    options = TransportOptions(
        retry=Retry(),
        throttle=AdaptiveThrottle(),
        limiter=AdaptiveConcurrency(),
        breaker=CircuitBreaker(),
        bulkhead=Bulkhead(4),
        hedge=Hedge(delay=0.1),
    )
    verdicts = Verdicts(
        retry_error=lambda exc: False,
        retry_response=lambda response: False,
        breaker_error=lambda exc: False,
        breaker_response=lambda response: False,
        wait_hint=lambda breaker: lambda outcome: None,
        discard=lambda response: None,
    )
    Origins(options, FakeClock(), verdicts, wrap).get("origin")
    names: dict[type, str] = {
        AdaptiveThrottle: "throttle",
        AdaptiveConcurrency: "limiter",
        CircuitBreaker: "breaker",
        Bulkhead: "bulkhead",
    }
    for pipeline in pipelines:  # plain, then hedged
        policies = pipeline.policies
        assert isinstance(policies[0], Retry)
        gates = tuple(names[type(p)] for p in policies if type(p) in names)
        assert gates == GATES
        assert all(type(p) in names for p in policies[-len(GATES) :])  # innermost, together
    assert len(pipelines) == 2


def answered(client: HopClient) -> list[str]:
    found: list[str] = []
    client.call(None, found.append)
    return found


def test_a_limiter_refusal_after_the_throttle_admitted_is_withdrawn_and_not_retried() -> None:
    """ours+adaptive: the limiter refuses inside the throttle; the throttle withdraws the
    request, the breaker (inside the limiter) is never asked, Retry does not retry, and nothing
    is sent."""
    sim = Sim("gates")
    client = HopClient(
        sim,
        Leaf(sim, workers=1, median=0.01, sigma=0.0),
        CONFIGS["ours+adaptive"],
        "hop",
        to_leaf=True,
    )
    assert client.limiter is not None and client.throttle is not None
    assert client.breaker is not None
    while client.limiter._try_acquire():  # take every slot
        pass
    in_flight = client.limiter.in_flight
    assert answered(client) == [OVERLOADED]
    assert client.sent == 0 and client.refused == 1
    assert client.throttle._core.counts(sim.now()) == (0, 0)  # withdrawn: no request counted
    assert client.limiter.in_flight == in_flight and client.limiter.rejections == 1
    assert client.breaker.metrics.total_rejections == 0  # the breaker (inside) never asked


def test_an_open_breaker_inside_the_throttle_and_limiter_leaves_them_no_outcome() -> None:
    """ours+adaptive with the breaker open: the throttle and the limiter admitted the attempt,
    then the breaker (inside them) refused it; the throttle withdraws the request, the limiter
    releases its slot without a sample, nothing is sent and Retry does not retry."""
    sim = Sim("gates")
    leaf = Leaf(sim, workers=1, median=0.01, sigma=0.0)
    client = HopClient(sim, leaf, CONFIGS["ours+adaptive"], "hop", to_leaf=True)
    limiter, throttle, breaker = client.limiter, client.throttle, client.breaker
    assert limiter is not None and throttle is not None and breaker is not None
    limit = limiter.limit
    breaker.open()
    assert [answered(client) for _ in range(50)] == [[OVERLOADED]] * 50
    assert client.sent == 0 and client.refused == 50 and leaf.received == 0
    assert throttle._core.counts(sim.now()) == (0, 0) and throttle.refusals == 0
    assert limiter.in_flight == 0 and limiter.limit == limit and limiter.rejections == 0
    assert breaker.metrics.total_rejections == 50


def test_a_bulkhead_refusal_releases_the_breakers_permit_without_recording() -> None:
    """ours+fixed: the bulkhead (innermost) refuses; the breaker records no outcome, the call
    is answered at once and not retried."""
    sim = Sim("gates")
    client = HopClient(
        sim,
        Leaf(sim, workers=1, median=0.01, sigma=0.0),
        CONFIGS["ours+fixed"],
        "hop",
        to_leaf=True,
    )
    assert client.bulkhead is not None and client.breaker is not None
    while client.bulkhead._try_acquire():
        pass
    assert answered(client) == [OVERLOADED]
    metrics = client.breaker.metrics
    assert (metrics.calls, metrics.total_successes, metrics.total_failures) == (0, 0, 0)
    assert metrics.total_interrupted == 1 and client.sent == 0


class Answers:
    """A target that answers each request with the next of ``statuses`` after 10 ms."""

    delay = 0.001

    def __init__(self, sim: Sim, *statuses: str) -> None:
        self.sim = sim
        self.statuses = list(statuses)

    def receive(self, deadline: float | None, reply: Callable[[str], None]) -> None:
        self.sim.at(0.010, reply, self.statuses.pop(0))


@pytest.mark.parametrize(
    ("status", "accepted", "sampled"),
    [
        (OK, 1, True),
        (ERROR, 1, True),  # a 500: the transport's limiter takes it as a plain sample
        (EXPIRED, 1, True),  # a 504
        (OVERLOADED, 0, True),  # a 503: a drop for the limiter, not an accept for the throttle
        (UNREACHABLE, 0, False),  # a refused connection: no sample, not accepted
    ],
)
def test_a_hop_judges_an_outcome_as_the_transports_copies_do(
    status: str, accepted: int, sampled: bool
) -> None:
    sim = Sim("gates")
    client = HopClient(sim, Answers(sim, status), CONFIGS["ours+adaptive"], "hop", to_leaf=True)
    limiter, throttle = client.limiter, client.throttle
    assert limiter is not None and throttle is not None
    samples: list[tuple[float, bool]] = []
    algorithm = limiter._admission.algorithm

    class Spy:  # the samples the limit algorithm is given
        def update(self, rtt: float, permit: int, dropped: bool, now: float) -> int:
            samples.append((round(rtt, 6), dropped))
            return algorithm.update(rtt, permit, dropped, now)

    limiter._admission.algorithm = Spy()  # type: ignore[assignment]
    client.call(None, lambda answer: None)
    sim.run(0.0115)  # the first attempt's answer; a retry waits for its backoff
    assert client.sent == 1 and limiter.in_flight == 0
    assert throttle._core.counts(sim.now()) == (1, accepted)
    assert samples == ([(0.011, status == OVERLOADED)] if sampled else [])
