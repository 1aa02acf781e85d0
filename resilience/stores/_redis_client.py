"""The client a ``RedisStore`` talks through: the user's, as long as it tries each command once.

A store call must be bounded: a rate limiter or an idempotency claim that waits seconds for a
dead Redis holds the request that asked. redis-py >= 6 retries failed commands by default for
clients built with ``Redis(host=..., port=...)`` (ten retries with exponential backoff here:
~3.7 s per call against a stopped server, measured), though not for ``Redis.from_url``. So a
store over a client that would retry talks through a *twin*: the same class on a new pool
with the same connection settings (address, credentials, TLS, socket timeouts, pool size) and
no retries. Each store call then takes at most the connect timeout plus the socket timeout;
on failure the store follows ``on_error`` at once and tries Redis again on the next call.
The user's client is left as it was (its other callers keep their retries); the store closes
the twin in ``close()`` / ``aclose()``.

Clients whose pool cannot be copied this way (cluster clients, Sentinel pools, custom pools)
are accepted only when they already try once (``retry=Retry(NoBackoff(), 0)``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["tried_once"]


def _retries(retry: Any) -> int:
    if retry is None:
        return 0
    count = retry.get_retries() if hasattr(retry, "get_retries") else retry._retries
    return int(count)


def _retrying(settings: dict[str, Any]) -> bool:
    """Whether connections made with these settings would try a failed command again."""
    if settings.get("retry_on_error") or settings.get("retry_on_timeout"):
        return True  # redis-py then retries once even without a Retry
    return _retries(settings.get("retry")) > 0


def tried_once(client: Any, is_async: bool) -> tuple[Any, bool]:
    """``client``, or a twin of it that tries each command once; and whether the twin is the
    store's own (to close)."""
    import redis
    import redis.asyncio

    pool = getattr(client, "connection_pool", None)
    plain = (
        (redis.asyncio.ConnectionPool, redis.asyncio.BlockingConnectionPool)
        if is_async
        else (redis.ConnectionPool, redis.BlockingConnectionPool)
    )
    if pool is not None and type(pool) in plain:
        settings = dict(pool.connection_kwargs)
        if not _retrying(settings):
            return client, False
        return _twin(client, pool, settings, is_async), True
    retry = getattr(client, "retry", None)  # cluster clients keep theirs here
    if retry is None and hasattr(client, "get_retry"):
        retry = client.get_retry()
    if _retries(retry) == 0:
        return client, False
    raise ValueError(
        f"client: {type(client).__name__} retries failed commands ({_retries(retry)} retries), "
        "so one store call could wait seconds for a Redis that is down, and the store cannot "
        "make a twin of this client without retries; build it with "
        "retry=Retry(NoBackoff(), 0) (redis.retry / redis.backoff) and bound each call with "
        "socket_timeout and socket_connect_timeout"
    )


def _twin(client: Any, pool: Any, settings: dict[str, Any], is_async: bool) -> Any:
    from redis.backoff import NoBackoff

    if is_async:
        from redis.asyncio.retry import Retry
    else:
        from redis.retry import Retry  # type: ignore[assignment]

    settings["retry"] = Retry(NoBackoff(), 0)
    settings.pop("retry_on_error", None)
    settings.pop("retry_on_timeout", None)
    if hasattr(pool, "queue_class"):  # BlockingConnectionPool: how long to wait for a slot
        settings["timeout"] = pool.timeout
        settings["queue_class"] = pool.queue_class
    twin_pool = type(pool)(
        connection_class=pool.connection_class, max_connections=pool.max_connections, **settings
    )
    return type(client).from_pool(twin_pool)  # the twin owns its pool: closing it closes both
