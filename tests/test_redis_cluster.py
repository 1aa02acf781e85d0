"""Every Redis-backed policy on a cluster client (``redis.cluster.RedisCluster``), against a
one-node Redis Cluster: scripts whose keys spanned slots would be refused (CROSSSLOT)."""

from __future__ import annotations

from typing import Any

import pytest

from resilience import CircuitBreaker, CircuitOpenError, CircuitState, RateLimiter, RetryBudget
from resilience.stores import RedisStore
from tests.redis_server import RedisServer


@pytest.fixture
def cluster(redis_cluster: RedisServer) -> Any:
    client: Any = redis_cluster.client()
    client.flushall()
    yield client
    client.close()


def test_rate_limiter_on_a_cluster_client(cluster: Any) -> None:
    limiter = RateLimiter(5, burst=1, name="payments", store=RedisStore(cluster))
    assert [limiter.try_acquire().allowed for _ in range(3)] == [True, True, False]


def test_shared_breaker_on_a_cluster_client(cluster: Any) -> None:
    """Open, reject, and every key of the breaker in one slot."""
    store = RedisStore(cluster)
    breaker = CircuitBreaker("payments", minimum_calls=2, failure_rate=0.5, store=store)

    @breaker
    def fail() -> None:
        raise OSError("down")

    for _ in range(2):
        with pytest.raises(OSError):
            fail()
    with pytest.raises(CircuitOpenError):
        fail()
    assert breaker.state is CircuitState.OPEN
    keys = cluster.keys("resilience:*")
    assert keys, "the breaker keeps its state in Redis"
    assert len({cluster.keyslot(key) for key in keys}) == 1


def test_retry_budget_on_a_cluster_client(cluster: Any) -> None:
    budget = RetryBudget(
        ratio=0.5, min_retries_per_second=0.0, name="payments", store=RedisStore(cluster)
    )
    for _ in range(4):
        budget.record_attempt()
    assert budget.try_spend()
    assert cluster.keys("resilience:*") == [b"resilience:{payments}:budget"]


def test_idempotency_records_on_a_cluster_client(cluster: Any) -> None:
    store = RedisStore(cluster)
    claim = store.idempotency_claim("k", "fp", 30.0)
    assert claim.outcome == "claimed" and claim.token is not None
    assert store.idempotency_complete("k", "fp", claim.token, b"done", 60.0) == "stored"
    assert store.idempotency_claim("k", "fp", 30.0).response == b"done"


def test_a_cluster_client_that_retries_is_refused(redis_cluster: RedisServer) -> None:
    """A cluster client with redis-py's default retries would make each store call wait
    seconds during an outage (1.4 s measured) and the store cannot copy it without them: it
    is refused at construction, naming the parameter and the fix."""
    import redis.cluster

    client = redis.cluster.RedisCluster(host="127.0.0.1", port=redis_cluster.port)
    try:
        with pytest.raises(ValueError, match=r"client: RedisCluster retries .*NoBackoff"):
            RedisStore(client)
    finally:
        client.close()
