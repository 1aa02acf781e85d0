"""RedisStore during outages, on a real redis-server the tests kill: what telemetry names, and
how long a store call may take whatever the client's retry settings."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from resilience import RateLimiter, StoreRecovered, StoreUnavailable
from resilience.instrumentation import instrument
from resilience.stores import RedisStore
from resilience.testing import EventRecorder
from tests.redis_server import RedisServer

SECRET = "sk_live_4f9a0c"  # an API key a server partitions its rate limit by


@pytest.fixture
def outages() -> Iterator[InMemoryMetricReader]:
    """A meter provider counting resilience events (resilience.store.outages among them)."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    undo = instrument(meter_provider=provider)
    yield reader
    undo()
    provider.shutdown()


def _outage_labels(reader: InMemoryMetricReader) -> list[dict[str, Any]]:
    data = reader.get_metrics_data()
    assert data is not None
    return [
        dict(point.attributes or {})
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "resilience.store.outages"
        for point in metric.data.data_points
    ]


def _logged(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(
        f"{record.getMessage()} {sorted(vars(record).items())}" for record in caplog.records
    )


def test_rate_limit_outage_telemetry_names_the_limiter_not_the_partition(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture, outages: InMemoryMetricReader
) -> None:
    """A limiter partitioned by API key meets an outage and a recovery: the warning, the log
    records, the events and the outage metric's labels carry the limiter's name, never the
    key."""
    client: Any = redis_server.client()
    limiter = RateLimiter(10, name="api", store=RedisStore(client))
    assert limiter.try_acquire(partition=SECRET).allowed
    redis_server.stop()
    with EventRecorder() as recorder, caplog.at_level(logging.DEBUG, logger="resilience"):
        assert limiter.try_acquire(partition=SECRET).allowed  # on_error="allow"
        redis_server.start()
        assert limiter.try_acquire(partition=SECRET).allowed
    events = recorder.of(StoreUnavailable) + recorder.of(StoreRecovered)
    assert [event.policy for event in events] == ["api", "api"]
    assert _outage_labels(outages) == [{"resilience.policy": "api"}]
    assert "'api'" in _logged(caplog)
    assert SECRET not in _logged(caplog)


def test_idempotency_outage_telemetry_never_carries_the_scoped_key(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture, outages: InMemoryMetricReader
) -> None:
    """A claim whose record key holds the caller's scope (derived from its credentials) and
    its Idempotency-Key meets an outage: neither reaches the warning, the event or the
    metric's labels."""
    store = RedisStore(redis_server.client())
    record_key = f"idempotency:{SECRET}:order-1"
    redis_server.stop()
    with EventRecorder() as recorder, caplog.at_level(logging.DEBUG, logger="resilience"):
        store.idempotency_claim(record_key, "fingerprint", 60.0)
    (event,) = recorder.of(StoreUnavailable)
    assert event.policy == "idempotency"
    assert _outage_labels(outages) == [{"resilience.policy": "idempotency"}]
    assert SECRET not in _logged(caplog) and "order-1" not in _logged(caplog)


def _client(server: RedisServer, constructor: str, *, is_async: bool = False) -> Any:
    """A client to ``server`` built as users build them: ``Redis(host=..., port=...)`` (which
    redis-py >= 6 makes retry ten times, with backoff) or ``Redis.from_url`` (which does not)."""
    import redis
    import redis.asyncio

    kind: Any = redis.asyncio.Redis if is_async else redis.Redis
    timeouts = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}
    if constructor == "host":
        return kind(host="127.0.0.1", port=server.port, **timeouts)
    return kind.from_url(server.url, **timeouts)


@pytest.mark.parametrize("constructor", ["host", "url"])
def test_store_calls_during_an_outage_are_bounded_whatever_the_client_retries(
    redis_server: RedisServer, constructor: str
) -> None:
    """Redis killed: a rate-limit decision and an idempotency claim each come back (following
    on_error) within the socket timeouts, not after the client's retries and backoff (3.7 s
    per call with Redis(host=...) before); the client passed in keeps its own retries."""
    import time

    client = _client(redis_server, constructor)
    retries_before = client.get_connection_kwargs().get("retry")
    store = RedisStore(client, on_error="deny")
    limiter = RateLimiter(10, name="bounded", store=store)
    try:
        assert limiter.try_acquire().allowed
        redis_server.stop()
        started = time.monotonic()
        decision = limiter.try_acquire()
        claim = store.idempotency_claim("idempotency:k", "fp", 60.0)
        elapsed = time.monotonic() - started
    finally:
        store.close()
        client.close()
    assert not decision.allowed and claim.outcome == "unavailable"
    assert elapsed < 1.5, f"two store calls took {elapsed:.2f} s"
    assert client.get_connection_kwargs().get("retry") is retries_before


@pytest.mark.parametrize("constructor", ["host", "url"])
def test_async_store_calls_during_an_outage_are_bounded(
    redis_server: RedisServer, constructor: str
) -> None:
    """The same on redis.asyncio clients (4.3 s per call with Redis(host=...) before)."""
    import asyncio
    import time

    async def scenario() -> tuple[bool, str, float]:
        client = _client(redis_server, constructor, is_async=True)
        store = RedisStore(client, on_error="deny")
        limiter = RateLimiter(10, name="bounded-async", store=store)
        try:
            assert (await limiter.try_acquire_async()).allowed
            redis_server.stop()
            started = time.monotonic()
            decision = await limiter.try_acquire_async()
            claim = await store.idempotency_claim_async("idempotency:k", "fp", 60.0)
            return decision.allowed, claim.outcome, time.monotonic() - started
        finally:
            await store.aclose()
            await client.aclose()

    allowed, outcome, elapsed = asyncio.run(scenario())
    assert not allowed and outcome == "unavailable"
    assert elapsed < 1.5, f"two store calls took {elapsed:.2f} s"


def test_a_store_on_a_retrying_client_recovers_when_redis_is_back(
    redis_server: RedisServer,
) -> None:
    """The twin without retries still reconnects: after a restart the next call reaches
    Redis again (limited state shared anew)."""
    client = _client(redis_server, "host")
    store = RedisStore(client)
    limiter = RateLimiter(1, per=60.0, name="back", store=store)
    try:
        redis_server.stop()
        assert limiter.try_acquire().allowed  # on_error="allow"
        redis_server.start()
        assert limiter.try_acquire().allowed
        assert not limiter.try_acquire().allowed
    finally:
        store.close()
        client.close()
