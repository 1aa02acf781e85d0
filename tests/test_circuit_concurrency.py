"""The breaker under real concurrency: no lock around the call, exact counts, one transition."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from resilience import CircuitBreaker, CircuitState, CircuitStateChanged
from resilience.testing import EventRecorder, FakeClock

PARTIES = 16


def run_threads(target: Callable[[], object], count: int) -> None:
    """Run ``target`` in ``count`` threads and wait for all of them (bounded)."""
    threads = [threading.Thread(target=target) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
        assert not thread.is_alive(), "a worker thread hung"


def half_open(breaker: CircuitBreaker, clock: FakeClock) -> None:
    """Trip ``breaker`` by hand and let its open period pass: it admits trials next."""
    breaker.open()
    clock.advance(breaker._machine.open_for)
    assert breaker.state is CircuitState.HALF_OPEN


@pytest.mark.parametrize("state", ["closed", "half_open"])
def test_threads_run_through_the_breaker_in_parallel(state: str) -> None:
    """16 threads are inside the guarded call at once (a lock held around it would deadlock)."""
    clock = FakeClock()
    breaker = CircuitBreaker(half_open_calls=PARTIES, open_for=1.0, clock=clock)
    if state == "half_open":
        half_open(breaker, clock)  # every call takes the admission lock
    barrier = threading.Barrier(PARTIES, timeout=10)
    passed: list[int] = []

    @breaker
    def all_together() -> None:
        barrier.wait()  # returns only once all 16 threads are inside the call together
        passed.append(1)

    run_threads(all_together, PARTIES)
    assert len(passed) == PARTIES
    assert breaker.metrics.total_successes == PARTIES
    assert breaker.state is CircuitState.CLOSED


@pytest.mark.parametrize("state", ["closed", "half_open"])
def test_tasks_run_through_the_breaker_concurrently(state: str) -> None:
    """16 asyncio tasks are all inside the guarded coroutine at the same time."""
    clock = FakeClock()
    breaker = CircuitBreaker(half_open_calls=PARTIES, open_for=1.0, clock=clock)
    if state == "half_open":
        half_open(breaker, clock)

    async def scenario() -> list[int]:
        arrived: list[int] = []
        everyone = asyncio.Event()  # (asyncio.Barrier is 3.11+)

        @breaker
        async def all_together() -> int:
            index = len(arrived)  # each task gets a distinct arrival index
            arrived.append(index)
            if len(arrived) == PARTIES:
                everyone.set()
            await asyncio.wait_for(everyone.wait(), 10)  # only once all 16 are inside
            return index

        return await asyncio.gather(*(all_together() for _ in range(PARTIES)))

    assert sorted(asyncio.run(scenario())) == list(range(PARTIES))
    assert breaker.metrics.total_successes == PARTIES
    assert breaker.state is CircuitState.CLOSED


def test_counts_add_up_exactly_under_contention() -> None:
    """16 threads x 10,000 calls: every outcome is counted once, none lost or doubled."""
    clock = FakeClock()
    # Every thread starts with a success, so the window never holds only failures: the
    # threshold is checked on every outcome but never reached.
    breaker = CircuitBreaker(failure_rate=1.0, minimum_calls=1, on=ConnectionError, clock=clock)
    start = threading.Barrier(PARTIES, timeout=10)

    @breaker
    def call(kind: int) -> None:
        if kind == 0:
            raise ConnectionError  # a failure
        if kind == 1:
            raise ValueError  # not a failure: the dependency answered

    def worker() -> None:
        start.wait()
        for i in range(1, 10_001):
            try:
                call(i % 4)
            except (ConnectionError, ValueError):
                pass

    run_threads(worker, PARTIES)
    metrics = breaker.metrics
    assert metrics.state is CircuitState.CLOSED
    assert metrics.total_successes + metrics.total_failures == 160_000
    assert (metrics.total_failures, metrics.total_successes) == (40_000, 120_000)
    assert (metrics.calls, metrics.failures) == (160_000, 40_000)
    assert (metrics.total_rejections, metrics.total_interrupted) == (0, 0)


def test_fifty_concurrent_failures_open_the_breaker_exactly_once() -> None:
    """50 calls admitted together and failing together cause one CLOSED -> OPEN transition."""
    breaker = CircuitBreaker("db", minimum_calls=10, open_for=60.0, clock=FakeClock())
    transitions: list[tuple[str, str]] = []
    breaker.add_listener(lambda event: transitions.append((event.old, event.new)))
    barrier = threading.Barrier(50, timeout=10)

    @breaker
    def doomed() -> None:
        barrier.wait()  # all 50 are admitted before any of them fails
        raise ConnectionError

    def worker() -> None:
        try:
            doomed()
        except ConnectionError:
            pass

    with EventRecorder() as recorder:
        run_threads(worker, 50)
    assert transitions == [("closed", "open")]
    assert [(e.old, e.new) for e in recorder.of(CircuitStateChanged)] == [("closed", "open")]
    assert breaker.state is CircuitState.OPEN
    assert breaker.metrics.total_failures == 50


def test_fifty_concurrent_failing_trials_reopen_the_breaker_exactly_once() -> None:
    """50 half-open trials admitted under the lock and all failing reopen it once."""
    clock = FakeClock()
    breaker = CircuitBreaker(half_open_calls=50, open_for=1.0, clock=clock)
    half_open(breaker, clock)
    transitions: list[tuple[str, str]] = []
    breaker.add_listener(lambda event: transitions.append((event.old, event.new)))
    barrier = threading.Barrier(50, timeout=10)

    @breaker
    def doomed() -> None:
        barrier.wait()
        raise ConnectionError

    def worker() -> None:
        try:
            doomed()
        except ConnectionError:
            pass

    run_threads(worker, 50)
    assert transitions == [("half_open", "open")]
    assert breaker._machine.trials_in_flight == 0


def test_concurrent_state_reads_turn_half_open_once() -> None:
    """Many threads reading state after open_for cause one OPEN -> HALF_OPEN transition."""
    clock = FakeClock()
    breaker = CircuitBreaker(open_for=1.0, clock=clock)
    breaker.open()
    clock.advance(1.0)
    transitions: list[tuple[str, str]] = []
    breaker.add_listener(lambda event: transitions.append((event.old, event.new)))
    barrier = threading.Barrier(PARTIES, timeout=10)
    states: list[CircuitState] = []

    def reader() -> None:
        barrier.wait()
        states.append(breaker.state)

    run_threads(reader, PARTIES)
    assert states == [CircuitState.HALF_OPEN] * PARTIES
    assert transitions == [("open", "half_open")]
