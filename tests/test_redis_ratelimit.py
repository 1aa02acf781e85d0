"""RateLimiter on a real redis-server: shared limits, Redis time, outages and recovery."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from resilience import RateLimitedError, RateLimiter, StoreRecovered, StoreUnavailable
from resilience._gcra import GcraParams
from resilience.stores import MemoryStore, RedisStore
from resilience.testing import EventRecorder, FakeClock
from tests.redis_server import RedisServer
from tests.test_ratelimit import LeakyBucket


def test_matches_redis_cell_on_redis_time(redis_server: RedisServer) -> None:
    """CL.THROTTLE user123 15 30 60 on Redis: limit 16, remaining 15; the 17th waits ~2 s."""
    limiter = RateLimiter(
        30, per=60.0, burst=15, name="user123", store=RedisStore(redis_server.client())
    )
    first = limiter.try_acquire()
    assert (first.allowed, first.limit, first.remaining) == (True, 16, 15)
    assert first.reset_after == pytest.approx(2.0, abs=0.01)
    for _ in range(15):
        assert limiter.try_acquire().allowed
    seventeenth = limiter.try_acquire()
    assert not seventeenth.allowed
    assert seventeenth.retry_after == pytest.approx(2.0, abs=0.05)


def test_replicas_share_one_limit(redis_server: RedisServer) -> None:
    """Two stores on two connections (two replicas) draw from the same limit."""
    one = RateLimiter(
        1, per=60.0, burst=4, name="payments", store=RedisStore(redis_server.client())
    )
    two = RateLimiter(
        1, per=60.0, burst=4, name="payments", store=RedisStore(redis_server.client())
    )
    decisions = [limiter.try_acquire().allowed for limiter in (one, two) * 3]
    assert decisions == [True] * 5 + [False]


def test_different_keys_never_share_state(redis_server: RedisServer) -> None:
    """Limits with different keys are independent, and their keys carry TTLs and hash tags."""
    client: Any = redis_server.client()
    store = RedisStore(client, prefix="svc:")
    a = RateLimiter(1, per=60.0, name="a", store=store)
    b = RateLimiter(1, per=60.0, name="b", store=store)
    assert a.try_acquire().allowed
    assert not a.try_acquire().allowed
    assert b.try_acquire().allowed
    assert sorted(client.keys("*")) == [b"svc:{a}:gcra", b"svc:{b}:gcra"]
    assert 0 < client.pttl("svc:{a}:gcra") <= 60_000


def test_async_client(redis_server: RedisServer) -> None:
    """A redis.asyncio client works through acquire_async and the async decorator."""

    async def scenario() -> list[bool]:
        client: Any = redis_server.async_client()
        limiter = RateLimiter(1, per=60.0, burst=1, name="async", store=RedisStore(client))
        try:
            return [(await limiter.acquire_async()).allowed for _ in range(3)]
        finally:
            await client.aclose()

    assert asyncio.run(scenario()) == [True, True, False]


def test_redis_outage_allows_calls_with_one_event_then_recovers(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis killed mid-run: no RedisError, calls allowed, one event and one warning for the
    outage; restarted: shared limiting resumes by itself."""
    limiter = RateLimiter(1, per=60.0, burst=0, name="k", store=RedisStore(redis_server.client()))
    assert limiter.try_acquire().allowed
    assert not limiter.try_acquire().allowed
    redis_server.stop()
    with EventRecorder() as recorder, caplog.at_level(logging.WARNING, logger="resilience"):
        outage = [limiter.try_acquire().allowed for _ in range(5)]
        redis_server.start()
        after = [limiter.try_acquire().allowed for _ in range(2)]
    assert outage == [True] * 5
    assert after == [True, False]  # a fresh server: one allowed, then limited again
    assert [
        type(e).__name__
        for e in recorder.events
        if isinstance(e, (StoreUnavailable, StoreRecovered))
    ] == ["StoreUnavailable", "StoreRecovered"]
    unavailable = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(unavailable) == 1


def test_deny_on_error(redis_server: RedisServer) -> None:
    """With on_error="deny", an unreachable Redis refuses calls instead."""
    limiter = RateLimiter(10, name="d", store=RedisStore(redis_server.client(), on_error="deny"))
    redis_server.stop()
    decision = limiter.try_acquire()
    assert not decision.allowed
    assert decision.retry_after > 0


def test_bad_store_configuration() -> None:
    """Bad on_error values and non-clients fail at construction, naming the parameter."""
    import redis

    with pytest.raises(ValueError, match="on_error"):
        RedisStore(redis.Redis(), on_error="maybe")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="client"):
        RedisStore(object())


_keys = iter(range(10**9))


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rate=st.integers(1, 10),
    burst=st.integers(0, 10),
    costs=st.lists(st.integers(0, 3), min_size=1, max_size=30),
)
def test_redis_gcra_agrees_with_a_leaky_bucket_on_redis_time(
    redis_server: RedisServer, rate: int, burst: int, costs: list[int]
) -> None:
    """Random bursts of requests, decided by the Lua script on Redis's own clock, match the
    leaky-bucket model. The requests arrive back to back (a few ms of real time in all), and
    with an emission interval of at least 100 ms no decision can flip within that drift: the
    model evaluates them all at one instant."""
    limiter = RateLimiter(
        rate, burst=burst, name=f"model-{next(_keys)}", store=RedisStore(redis_server.client())
    )
    model = LeakyBucket(1.0 / rate, burst)
    for cost in costs:
        cost = min(cost, burst + 1)
        assert limiter.try_acquire(cost).allowed == model.offer(0.0, cost)


def test_scripts_survive_a_script_flush(redis_server: RedisServer) -> None:
    """Scripts run by SHA; after SCRIPT FLUSH (a restart, a failover) the next call loads the
    script again instead of failing."""
    client: Any = redis_server.client()
    limiter = RateLimiter(1, per=60.0, burst=1, name="flushed", store=RedisStore(client))
    guarded = limiter(lambda: "ok")
    assert guarded() == "ok"
    client.script_flush()
    assert guarded() == "ok"
    assert not limiter.try_acquire().allowed
    client.script_flush()
    assert not limiter.try_acquire().allowed


def test_redis_decisions_carry_the_memory_stores_numbers(redis_server: RedisServer) -> None:
    """The script answers with one integer (new TAT - now, in ns); every field derived from it
    (remaining, waits, retry-after, reset-after) matches the memory store's for the same
    steps: refusals, a reserved wait, a cost of two, a cost of zero. One emission interval is
    a second, so the few ms of Redis time the steps take cannot change a decision."""
    params = GcraParams(emission=1.0, tolerance=3.0, limit=3)  # 1/s with a burst of 2
    redis_store = RedisStore(redis_server.client())
    memory = MemoryStore(clock=FakeClock())
    steps = [(1, 0.0), (1, 0.0), (1, 0.0), (1, 0.0), (1, 1.5), (2, 0.0), (0, 0.0), (1, 0.5)]
    for cost, max_wait in steps:
        expected = memory.gcra("same", params, cost, max_wait)
        got = redis_store.gcra("same", params, cost, max_wait)
        assert (got.allowed, got.limit, got.remaining) == (
            expected.allowed,
            expected.limit,
            expected.remaining,
        ), (cost, max_wait)
        for field in ("retry_after", "reset_after", "wait"):
            assert getattr(got, field) == pytest.approx(getattr(expected, field), abs=0.05), field
    assert redis_store.gcra_admit("same", params, 1, 0.0) == pytest.approx(
        memory.gcra_admit("same", params, 1, 0.0), abs=0.05
    )


def test_async_decorator_on_a_redis_asyncio_client(redis_server: RedisServer) -> None:
    """The async decorator's path (one integer from the script, no decision object) admits
    the burst, then refuses with the script's retry-after."""

    async def scenario() -> tuple[list[str], float]:
        client: Any = redis_server.async_client()
        limiter = RateLimiter(
            1, per=60.0, burst=1, name="async-decorated", store=RedisStore(client)
        )

        @limiter
        async def charge() -> str:
            return "charged"

        try:
            results = [await charge(), await charge()]
            with pytest.raises(RateLimitedError) as refused:
                await charge()
            return results, refused.value.retry_after
        finally:
            await client.aclose()

    results, retry_after = asyncio.run(scenario())
    assert results == ["charged", "charged"]
    assert retry_after == pytest.approx(60.0, abs=0.5)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@example(first=("a", "a:a"), second=("a:a", "a"))
@given(
    first=st.tuples(
        st.text("a:{}", min_size=1, max_size=4),
        st.none() | st.text("a:{}\0", min_size=1, max_size=4),
    ),
    second=st.tuples(
        st.text("a:{}", min_size=1, max_size=4),
        st.none() | st.text("a:{}\0", min_size=1, max_size=4),
    ),
)
def test_distinct_limiters_and_partitions_never_share_a_redis_key(
    redis_server: RedisServer, first: tuple[str, str | None], second: tuple[str, str | None]
) -> None:
    """On Redis too (hash tags and all), two (name, partition) pairs that differ never meet
    in one bucket: limiter "a" with partition "a:a" and limiter "a:a" with partition "a"
    used to share the key "resilience:{a:a:a}:gcra"."""
    assume(first != second)
    client: Any = redis_server.client()
    try:
        client.flushall()
        store = RedisStore(client)
        one = RateLimiter(1, per=60.0, name=first[0], store=store)
        two = RateLimiter(1, per=60.0, name=second[0], store=store)
        assert one.try_acquire(partition=first[1]).allowed
        assert two.try_acquire(partition=second[1]).allowed
        assert not one.try_acquire(partition=first[1]).allowed
    finally:
        client.close()
