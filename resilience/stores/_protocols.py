"""What a store offers, as typed ``Protocol``s: the seam between policies and their state.

A policy holds a store and runs one atomic *step* on it per decision; it never sees how the
store keeps its state (a dict under a lock, a Lua script on Redis). Each step has a sync and an
async form (``*_async``, for ``redis.asyncio`` clients; the memory store answers both). New
stores implement the protocols they serve and nothing else; a policy checks, at construction,
that its store has the steps it needs (``isinstance`` against these ``runtime_checkable``
protocols: it checks the names of the steps, not their signatures; mypy checks those).

- ``GcraStore`` / ``AsyncGcraStore``: one GCRA step (``RateLimiter``).
- ``ScriptStore``: one Lua script run by SHA on shared state (the shared circuit breaker's
  step, ``breaker.lua``, and the shared retry budget's, ``budget.lua``), with the outage
  bookkeeping of the store (``on_error``).
- ``IdempotencyStore`` / ``AsyncIdempotencyStore``: the four steps of an idempotency record
  (the idempotency middleware's): claim, renew, complete, release; and ``Claim``, the answer to
  a claim.

This module imports nothing of the package above ``_gcra``, so policies, adapters and stores
can all import it (it is how the ``_idempotency`` <-> ``stores`` import cycle went away).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable

from resilience._gcra import GcraParams, RateLimitDecision

__all__ = [
    "AsyncGcraStore",
    "AsyncIdempotencyStore",
    "Claim",
    "Completion",
    "GcraStore",
    "IdempotencyStore",
    "Outcome",
    "Renewal",
    "ScriptStore",
    "check_script_store",
]

# "unavailable": the store could not answer (Redis down or slow). The idempotency policy, not
# the store, decides what that means (by default: refuse the request, 503). "fenced": the store
# answered but cannot vouch for an absent record yet (a Redis that just restarted may have lost
# the record of a request still running: see ``idempotency.lua``); ``Claim.retry_after`` says
# for how long. The policy treats it as "unavailable", with that Retry-After.
Outcome = Literal["claimed", "replay", "in_progress", "mismatch", "unavailable", "fenced"]
# After a renewal or a completion: the claim is still ours ("renewed"/"stored"), another request
# holds or finished the key ("lost"), or the store could not answer ("unavailable").
Renewal = Literal["renewed", "lost", "unavailable"]
Completion = Literal["stored", "lost", "unavailable"]


class Claim(NamedTuple):
    """A store's answer to a claim: ``token`` when claimed, ``response`` when replayed,
    ``retry_after`` (seconds) when fenced."""

    outcome: Outcome
    token: str | None = None
    response: bytes | None = None
    retry_after: float | None = None


@runtime_checkable
class GcraStore(Protocol):
    """One GCRA step, atomically on the store's clock (sync)."""

    def gcra(
        self, key: str, params: GcraParams, cost: int, max_wait: float
    ) -> RateLimitDecision: ...

    def gcra_admit(self, key: str, params: GcraParams, cost: int, max_wait: float) -> float: ...


@runtime_checkable
class AsyncGcraStore(Protocol):
    """One GCRA step, for coroutines."""

    async def gcra_async(
        self, key: str, params: GcraParams, cost: int, max_wait: float
    ) -> RateLimitDecision: ...

    async def gcra_admit_async(
        self, key: str, params: GcraParams, cost: int, max_wait: float
    ) -> float: ...


@runtime_checkable
class ScriptStore(Protocol):
    """Shared state run as Lua scripts: the shared breaker's and the shared budget's steps.

    ``run``/``run_async`` answer ``None`` when the store is unavailable, after the store has
    noted the outage; ``on_error`` says what the policy does then ("allow" or "deny").
    """

    @property
    def is_async(self) -> bool: ...

    @property
    def on_error(self) -> str: ...

    def key(self, name: str, kind: str) -> str: ...

    def script(self, name: str) -> Any: ...

    def run(
        self, script: Any, keys: Sequence[str | bytes], args: Sequence[Any], kind: str, name: str
    ) -> Any: ...

    async def run_async(
        self, script: Any, keys: Sequence[str | bytes], args: Sequence[Any], kind: str, name: str
    ) -> Any: ...


@runtime_checkable
class IdempotencyStore(Protocol):
    """The steps of an idempotency record (sync). ``record`` is the record's name (already
    scoped and unambiguous: one per policy, caller and key); ``token`` fences every
    step after the claim, so a request whose claim was lost can neither renew, complete nor
    release someone else's.

    - ``claim``: take ``record`` for ``lease`` seconds, or say why not;
    - ``renew``: extend the claim by ``lease`` seconds (the heartbeat while the handler runs);
      if the record vanished (its lease ran out unseen, or the store restarted empty), take it
      again with the same token;
    - ``complete``: keep ``response`` for ``ttl`` seconds, unless another claim holds or
      finished the record (a vanished record is taken, as in ``renew``);
    - ``release``: forget the claim (the request did nothing); a lost claim is left alone.
    """

    def idempotency_claim(self, record: str, fingerprint: str, lease: float) -> Claim: ...

    def idempotency_renew(
        self, record: str, fingerprint: str, token: str, lease: float
    ) -> Renewal: ...

    def idempotency_complete(
        self, record: str, fingerprint: str, token: str, response: bytes, ttl: float
    ) -> Completion: ...

    def idempotency_release(self, record: str, token: str) -> None: ...


@runtime_checkable
class AsyncIdempotencyStore(Protocol):
    """The same steps for coroutines (``MemoryStore``, ``RedisStore`` over ``redis.asyncio``)."""

    async def idempotency_claim_async(
        self, record: str, fingerprint: str, lease: float
    ) -> Claim: ...

    async def idempotency_renew_async(
        self, record: str, fingerprint: str, token: str, lease: float
    ) -> Renewal: ...

    async def idempotency_complete_async(
        self, record: str, fingerprint: str, token: str, response: bytes, ttl: float
    ) -> Completion: ...

    async def idempotency_release_async(self, record: str, token: str) -> None: ...


def check_script_store(store: object) -> ScriptStore:
    """``store`` for a policy sharing its state through scripts (the circuit breaker, the retry
    budget), or ``TypeError`` / ``ValueError`` naming ``store``.

    Any ``ScriptStore`` is accepted, not only a ``RedisStore``: the protocol is the seam (a
    store may wrap a client of its own, count its calls, add its own error handling), and the
    scripts it runs are ours, so the rules stay ours. What the policies act on without a
    script is checked here: ``on_error`` (read in every outage; "Allow" must not quietly mean
    "deny") and ``is_async`` (which steps may run).
    """
    if not isinstance(store, ScriptStore):
        raise TypeError(
            "store must be a MemoryStore, a RedisStore or None, or a ScriptStore (is_async, "
            f"on_error, key, script, run, run_async), got {store!r}"
        )
    if store.on_error not in ("allow", "deny"):
        raise ValueError(f"store.on_error must be 'allow' or 'deny', got {store.on_error!r}")
    if not isinstance(store.is_async, bool):
        raise TypeError(f"store.is_async must be True or False, got {store.is_async!r}")
    return store
