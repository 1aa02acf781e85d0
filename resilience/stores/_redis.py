"""RedisStore: state shared by a fleet of replicas, one atomic Lua step per decision.

Each step is a script run by its SHA with one ``EVALSHA`` (loaded again on NOSCRIPT, see
``_scripts``), on Redis's own clock (``TIME``, microseconds, used at millisecond scale), so
replicas with skewed clocks still agree. The scripts: ``gcra.lua`` (rate limiters, here),
``breaker.lua`` (circuit breakers, driven by ``resilience._circuit.shared``), ``budget.lua``
(retry budgets) and the idempotency records'. Keys are namespaced by ``prefix`` and the
policy's name, carry TTLs, and wrap the name in a hash tag (``{payments}``) so that each
policy's keys land in one cluster slot.

When Redis is unreachable or slow, no ``RedisError`` reaches the caller: the store follows
``on_error`` ("allow": behave as unlimited, or closed; "deny": refuse), emits one
``StoreUnavailable`` event and one warning per outage (not per call, whichever policy meets it),
and recovers by itself on the next successful call.

Each store call tries Redis once, so it takes at most the client's ``socket_connect_timeout``
plus ``socket_timeout`` (set them small, e.g. 0.05 s), whatever the client's retry settings: a
client that would retry (redis-py >= 6's ``Redis(host=...)`` does, ~3.7 s per call against a
dead server) is used through a twin without retries (see ``_redis_client``), which ``close()``
/ ``aclose()`` closes.
"""

from __future__ import annotations

import functools
import importlib.resources
import inspect
import logging
import math
import threading
from collections.abc import Sequence
from typing import Any, Literal

from resilience import _events
from resilience._gcra import SLACK, GcraParams, RateLimitDecision, decide
from resilience.stores import _redis_idempotency
from resilience.stores._protocols import Claim, Completion, Renewal
from resilience.stores._redis_client import tried_once
from resilience.stores._scripts import AsyncScript, SyncScript

__all__ = ["RedisStore"]

_log = logging.getLogger("resilience")
_MAX_CACHED_KEYS = 4096  # encoded GCRA keys kept (one per limiter and partition seen lately)
_GCRA_LUA = importlib.resources.files("resilience.stores").joinpath("gcra.lua").read_text()


class RedisStore:
    """Keep policy state in Redis (``redis.Redis``, ``redis.asyncio.Redis`` or a cluster
    client). ``prefix`` namespaces the keys; ``on_error`` is "allow" or "deny".

    One store may serve many policies (rate limiters, circuit breakers, retry budgets); an
    outage is one outage of the store, announced once whichever policy meets it first.
    """

    def __init__(
        self,
        client: Any,
        *,
        prefix: str = "resilience:",
        on_error: Literal["allow", "deny"] = "allow",
    ) -> None:
        if on_error not in ("allow", "deny"):
            raise ValueError(f"on_error must be 'allow' or 'deny', got {on_error!r}")
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a string, got {prefix!r}")
        if not hasattr(client, "register_script"):
            raise TypeError(f"client must be a redis-py client, got {client!r}")
        self.prefix = prefix
        self.on_error = on_error
        # redis.asyncio clients answer with coroutines: policies pick the matching path once.
        self.is_async = inspect.iscoroutinefunction(getattr(client, "execute_command", None))
        self._given = client
        client, self._owns_client = tried_once(client, self.is_async)
        self._client = client
        self._script_type = AsyncScript if self.is_async else SyncScript
        self._gcra: Any = self._script_type(client, _GCRA_LUA)
        self._scripts: dict[str, Any] = {"gcra": self._gcra}
        from redis.exceptions import RedisError  # here, not per call: redis is optional

        self._errors: type[Exception] = RedisError
        self._keys: dict[str, list[bytes]] = {}
        self._down = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RedisStore({self._given!r}, prefix={self.prefix!r}, on_error={self.on_error!r})"

    def close(self) -> None:
        """Close the connections the store opened itself (its twin of a client that retries);
        the client you passed stays open. Sync clients."""
        if self._owns_client:
            self._client.close()

    async def aclose(self) -> None:
        """``close`` for ``redis.asyncio`` clients."""
        if self._owns_client:
            await self._client.aclose()

    def key(self, name: str, kind: str) -> str:
        """The Redis key of policy ``name``'s ``kind`` of state, hash-tagged by name."""
        return f"{self.prefix}{{{name}}}:{kind}"

    def _keys_of(self, name: str) -> list[bytes]:
        keys = self._keys.get(name)
        if keys is None:  # encoded once: redis-py passes bytes through (see _scripts)
            if len(self._keys) >= _MAX_CACHED_KEYS:  # partitions are unbounded; the cache not
                self._keys.clear()
            keys = self._keys[name] = [self.key(name, "gcra").encode()]
        return keys

    # -- the seam other policies run their scripts through ----------------------------------

    def script(self, name: str) -> Any:
        """The script ``stores/<name>.lua``, made once (run by SHA; loaded on NOSCRIPT)."""
        script = self._scripts.get(name)
        if script is None:
            source = importlib.resources.files("resilience.stores").joinpath(f"{name}.lua")
            script = self._scripts[name] = self._script_type(self._client, source.read_text())
        return script

    def run(
        self, script: Any, keys: Sequence[str | bytes], args: Sequence[Any], kind: str, name: str
    ) -> Any:
        """Run ``script`` once (sync clients); ``None`` when Redis is unavailable.

        ``kind`` and ``name`` say which policy met an outage ("circuit breaker", "db"), in its
        event and its one warning: ``name`` is the policy's configured name, never a key a
        request chose (a partition, an idempotency key), which would put secrets and unbounded
        cardinality in logs and metric labels.
        """
        try:
            reply = script(keys=keys, args=args)
        except self._errors as exc:
            self._unavailable(kind, name, exc)
            return None
        if self._down:
            self._recovered(kind, name)
        return reply

    async def run_async(
        self, script: Any, keys: Sequence[str | bytes], args: Sequence[Any], kind: str, name: str
    ) -> Any:
        """``run`` for ``redis.asyncio`` clients."""
        try:
            reply = await script(keys=keys, args=args)
        except self._errors as exc:
            self._unavailable(kind, name, exc)
            return None
        if self._down:
            self._recovered(kind, name)
        return reply

    # -- rate limiting --------------------------------------------------------------------------

    def gcra(self, key: str, params: GcraParams, cost: int, max_wait: float) -> RateLimitDecision:
        """One GCRA step for ``key``, atomically on the server (sync clients)."""
        try:
            reply = self._gcra(keys=self._keys_of(key), args=_gcra_args(params, cost, max_wait))
        except self._errors as exc:
            return self._fallback(params, exc)
        if self._down:
            self._recovered("rate limiter", params.name)
        return _gcra_decision(params, reply, cost)

    async def gcra_async(
        self, key: str, params: GcraParams, cost: int, max_wait: float
    ) -> RateLimitDecision:
        """One GCRA step for ``key`` (``redis.asyncio`` clients)."""
        try:
            reply = await self._gcra(
                keys=self._keys_of(key), args=_gcra_args(params, cost, max_wait)
            )
        except self._errors as exc:
            return self._fallback(params, exc)
        if self._down:
            self._recovered("rate limiter", params.name)
        return _gcra_decision(params, reply, cost)

    def gcra_admit(self, key: str, params: GcraParams, cost: int, max_wait: float) -> float:
        """The decorator's path: the wait (>= 0) if admitted, else -retry_after (no decision
        object)."""
        try:
            reply = self._gcra(keys=self._keys_of(key), args=_gcra_args(params, cost, max_wait))
        except self._errors as exc:
            decision = self._fallback(params, exc)
            return decision.wait if decision.allowed else -decision.retry_after
        if self._down:
            self._recovered("rate limiter", params.name)
        return _gcra_delay(params, reply)

    async def gcra_admit_async(
        self, key: str, params: GcraParams, cost: int, max_wait: float
    ) -> float:
        """``gcra_admit`` for ``redis.asyncio`` clients (no decision object either)."""
        try:
            reply = await self._gcra(
                keys=self._keys_of(key), args=_gcra_args(params, cost, max_wait)
            )
        except self._errors as exc:
            decision = self._fallback(params, exc)
            return decision.wait if decision.allowed else -decision.retry_after
        if self._down:
            self._recovered("rate limiter", params.name)
        return _gcra_delay(params, reply)

    # -- idempotency records (resilience.asgi / resilience.wsgi) ------------------------------

    def idempotency_claim(self, record: str, fingerprint: str, lease: float) -> Claim:
        """Claim ``record`` for ``lease`` seconds, or say why not (see ``IdempotencyStore``)."""
        return _redis_idempotency.claim(self, record, fingerprint, lease)

    def idempotency_renew(self, record: str, fingerprint: str, token: str, lease: float) -> Renewal:
        """Extend the claim ``token`` holds (the heartbeat while its handler runs)."""
        return _redis_idempotency.renew(self, record, fingerprint, token, lease)

    def idempotency_complete(
        self, record: str, fingerprint: str, token: str, response: bytes, ttl: float
    ) -> Completion:
        """Keep the claimed request's response for ``ttl`` seconds."""
        return _redis_idempotency.complete(self, record, fingerprint, token, response, ttl)

    def idempotency_release(self, record: str, token: str) -> None:
        """Forget the claim (the request did nothing)."""
        _redis_idempotency.release(self, record, token)

    async def idempotency_claim_async(self, record: str, fingerprint: str, lease: float) -> Claim:
        return await _redis_idempotency.claim_async(self, record, fingerprint, lease)

    async def idempotency_renew_async(
        self, record: str, fingerprint: str, token: str, lease: float
    ) -> Renewal:
        return await _redis_idempotency.renew_async(self, record, fingerprint, token, lease)

    async def idempotency_complete_async(
        self, record: str, fingerprint: str, token: str, response: bytes, ttl: float
    ) -> Completion:
        return await _redis_idempotency.complete_async(
            self, record, fingerprint, token, response, ttl
        )

    async def idempotency_release_async(self, record: str, token: str) -> None:
        await _redis_idempotency.release_async(self, record, token)

    # -- outages --------------------------------------------------------------------------------

    def _fallback(self, params: GcraParams, exc: Exception) -> RateLimitDecision:
        self._unavailable("rate limiter", params.name, exc)
        if self.on_error == "allow":
            return RateLimitDecision(True, params.limit, params.limit - 1, 0.0, 0.0, 0.0, True)
        return RateLimitDecision(
            False, params.limit, 0, params.emission, params.emission, 0.0, True
        )

    def _unavailable(self, kind: str, name: str, exc: Exception) -> None:
        """Note a failed call: the first one of an outage logs and emits, the rest stay quiet."""
        with self._lock:
            first, self._down = not self._down, True
        if first:
            _log.warning(
                "resilience: Redis unavailable (%s: %s); %s %r will %s until it is back",
                type(exc).__name__,
                exc,
                kind,
                name,
                self.on_error,
            )
            if _events.listeners:
                _events.emit(_events.StoreUnavailable(name, type(exc).__name__, self.on_error))

    def _recovered(self, kind: str, name: str) -> None:
        with self._lock:
            was_down, self._down = self._down, False
        if was_down:
            _log.warning("resilience: Redis is back; %s %r shares its state again", kind, name)
            if _events.listeners:
                _events.emit(_events.StoreRecovered(name))


@functools.lru_cache(maxsize=256)
def _gcra_args(params: GcraParams, cost: int, max_wait: float) -> list[bytes]:
    """``gcra.lua``'s arguments, as bytes (cached: a limiter sends the same ones): the TAT
    increment and the admission limit in ns, and the key's TTL in ms."""
    limit = params.tolerance + max_wait
    return [
        repr(params.emission * cost * 1e9).encode(),
        repr(limit * 1e9 + SLACK * 1e9).encode(),
        str(max(1, math.ceil(limit * 1000.0))).encode(),
    ]


def _gcra_delay(params: GcraParams, reply: int) -> float:
    """``gcra_admit``'s answer from the script's: the wait (>= 0) when admitted, else
    -retry_after. ``reply`` is ahead = new TAT - now in ns, or -1 - ahead when refused."""
    if reply >= 0:
        wait = reply / 1e9 - params.tolerance
        return wait if wait > SLACK else 0.0
    return -((-1 - reply) / 1e9 - params.tolerance)


def _gcra_decision(params: GcraParams, reply: int, cost: int) -> RateLimitDecision:
    """The whole decision from the script's one integer (see ``_gcra_delay``)."""
    delay = _gcra_delay(params, reply)
    if reply >= 0:
        return decide(params, True, reply / 1e9, delay)
    ahead = (-1 - reply) / 1e9
    stored_ahead = max(0.0, ahead - params.emission * cost)  # the TAT, which stays as it was
    return decide(params, False, stored_ahead, -delay)
