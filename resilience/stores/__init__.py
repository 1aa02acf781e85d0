"""Where policies keep their mutable state: in memory (the default) or shared on Redis.

A store runs each state change as one atomic step. ``MemoryStore`` does it under a lock with
the policy's clock; ``RedisStore`` in a Lua script with Redis's own clock, so a fleet of
replicas shares one rate limit, one circuit breaker, one retry budget. ``redis`` is imported
only when a ``RedisStore`` is used. What a store offers is typed as protocols (``GcraStore``,
``ScriptStore``, ``IdempotencyStore`` and their async twins): a new store implements the
protocols of the policies it serves.
"""

from typing import TYPE_CHECKING, Any

from resilience._public import publish as _publish
from resilience.stores._memory import MemoryStore
from resilience.stores._protocols import (
    AsyncGcraStore,
    AsyncIdempotencyStore,
    Claim,
    GcraStore,
    IdempotencyStore,
    ScriptStore,
)

if TYPE_CHECKING:
    from resilience.stores._redis import RedisStore

__all__ = [
    "AsyncGcraStore",
    "AsyncIdempotencyStore",
    "Claim",
    "GcraStore",
    "IdempotencyStore",
    "MemoryStore",
    "RedisStore",
    "ScriptStore",
]

_publish(__name__, globals(), __all__)


def __getattr__(name: str) -> Any:
    if name == "RedisStore":  # lazily, so that `redis` stays an optional dependency
        from resilience.stores._redis import RedisStore

        _publish(__name__, {name: RedisStore}, [name])
        return RedisStore
    raise AttributeError(f"module 'resilience.stores' has no attribute {name!r}")
