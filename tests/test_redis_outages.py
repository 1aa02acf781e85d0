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
