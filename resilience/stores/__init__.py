"""Where policies keep their mutable state: in memory (the default) or shared on Redis.

A store runs each state change as one atomic step. ``MemoryStore`` does it under a lock with
the policy's clock; ``RedisStore`` (coming) in a Lua script with Redis's own clock, so a fleet
of replicas shares one limit.
"""

from resilience.stores._memory import MemoryStore

__all__ = ["MemoryStore"]
