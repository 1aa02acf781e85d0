"""A fleet of processes sharing one Redis rate limit admits what one limiter would."""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

from tests.redis_server import RedisServer

RATE, BURST, SECONDS, PROCESSES = 200, 20, 3.0, 4


def replica(url: str, ready: Any, start: Any, results: Any) -> None:
    """One replica: hammer the shared limiter (bounded in time and count), report admissions."""
    import redis

    from resilience import RateLimiter
    from resilience.stores import RedisStore

    client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
    limiter = RateLimiter(RATE, burst=BURST, name="fleet", store=RedisStore(client))
    client.ping()  # connected and warm before the clock starts
    ready.wait(30)  # every replica is up...
    start_at = start.get(timeout=30)  # ...and the parent has picked the common start
    while time.time() < start_at:
        time.sleep(0.001)
    admitted = 0
    for _ in range(200_000):
        if time.time() >= start_at + SECONDS:
            break
        if limiter.try_acquire().allowed:
            admitted += 1
    results.put(admitted)


def test_four_processes_share_one_limit(redis_server: RedisServer) -> None:
    """4 processes on one 200/s limit with burst 20 for 3 s admit 200 x 3 + 21, within 3 %."""
    context = multiprocessing.get_context("spawn")
    results, start = context.Queue(), context.Queue()
    ready = context.Barrier(PROCESSES + 1)
    workers = [
        context.Process(target=replica, args=(redis_server.url, ready, start, results))
        for _ in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    ready.wait(60)  # all replicas imported, connected and waiting
    start_at = time.time() + 0.2
    for _ in workers:
        start.put(start_at)
    counts = [results.get(timeout=30) for _ in workers]
    for worker in workers:
        worker.join(10)
    expected = RATE * SECONDS + BURST + 1
    assert all(count > 0 for count in counts), counts  # every replica got a share
    assert abs(sum(counts) - expected) <= 0.03 * expected, (sum(counts), counts)
