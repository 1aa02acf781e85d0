"""Static checks (run by ``mypy --strict tests/typing``): the stores offer the steps their
protocols promise, sync and async."""

from __future__ import annotations

from resilience.stores import (
    AsyncGcraStore,
    AsyncIdempotencyStore,
    GcraStore,
    IdempotencyStore,
    MemoryStore,
    RedisStore,
    ScriptStore,
)


def memory(store: MemoryStore) -> None:
    gcra: GcraStore = store
    gcra_async: AsyncGcraStore = store
    records: IdempotencyStore = store
    records_async: AsyncIdempotencyStore = store
    del gcra, gcra_async, records, records_async


def redis(store: RedisStore) -> None:
    gcra: GcraStore = store
    gcra_async: AsyncGcraStore = store
    records: IdempotencyStore = store
    records_async: AsyncIdempotencyStore = store
    scripts: ScriptStore = store  # the shared breaker's and budget's steps
    del gcra, gcra_async, records, records_async, scripts
