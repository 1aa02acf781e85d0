"""The breaker under real concurrency: no lock around the call, exact counts, one transition."""

from __future__ import annotations

import asyncio
import threading

import pytest

from resilience import CircuitBreaker, CircuitState
from resilience.testing import FakeClock


def test_threads_run_through_a_closed_breaker_in_parallel() -> None:
    """16 threads are inside the guarded call at once (a lock held around it would deadlock)."""
    breaker = CircuitBreaker()
    barrier = threading.Barrier(16, timeout=10)
    passed: list[int] = []

    @breaker
    def twenty_ms_call(n: int) -> None:
        barrier.wait()  # returns only once all 16 threads are inside the call together
        passed.append(n)

    threads = [threading.Thread(target=twenty_ms_call, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    assert sorted(passed) == list(range(16))
    assert breaker.metrics.total_successes == 16


def test_tasks_run_through_a_closed_breaker_concurrently() -> None:
    """16 asyncio tasks are all inside the guarded coroutine at the same time."""
    breaker = CircuitBreaker()

    async def scenario() -> int:
        inside = 0
        everyone_in = asyncio.Event()

        @breaker
        async def call() -> int:
            nonlocal inside
            inside += 1
            if inside == 16:
                everyone_in.set()
            await asyncio.wait_for(everyone_in.wait(), 10)
            return inside

        results = await asyncio.gather(*(call() for _ in range(16)))
        return min(results)

    assert asyncio.run(scenario()) == 16


def test_counts_add_up_exactly_under_contention() -> None:
    """16 threads x 10,000 calls: every outcome is counted once, none lost or doubled."""
    clock = FakeClock()
    breaker = CircuitBreaker(minimum_calls=10**9, clock=clock)  # never opens
    start = threading.Barrier(16, timeout=10)

    def ok() -> None:
        return None

    def broken() -> None:
        raise ConnectionError

    def worker() -> None:
        start.wait()
        for i in range(10_000):
            try:
                breaker.call(broken if i % 4 == 0 else ok)
            except ConnectionError:
                pass

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    metrics = breaker.metrics
    assert metrics.total_failures == 16 * 2_500
    assert metrics.total_successes == 16 * 7_500
    assert metrics.calls == 160_000
    assert metrics.failures == 40_000


@pytest.mark.parametrize("run", range(3))
def test_fifty_concurrent_failures_open_the_breaker_exactly_once(run: int) -> None:
    """50 calls admitted together and failing together cause one CLOSED -> OPEN transition."""
    breaker = CircuitBreaker(minimum_calls=10, open_for=60.0)
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

    threads = [threading.Thread(target=worker) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    assert transitions == [("closed", "open")]
    assert breaker.state is CircuitState.OPEN
    assert breaker.metrics.total_failures == 50
