"""MemoryStore: the embedded default; state in a dict, each step atomic under one lock."""

from __future__ import annotations

import os
import threading

from resilience._clock import SYSTEM_CLOCK, Clock
from resilience._gcra import GcraParams, RateLimitDecision, gcra_admit, gcra_step
from resilience._idempotency import Claim

__all__ = ["MemoryStore"]


class _Record:
    """One idempotency key: running (``token`` holds it until ``expires``) or done."""

    __slots__ = ("expires", "fingerprint", "response", "token")

    def __init__(self, fingerprint: str, token: str, expires: float) -> None:
        self.fingerprint = fingerprint
        self.token: str | None = token
        self.expires = expires
        self.response: bytes | None = None


class MemoryStore:
    """In-process state for rate limiters and idempotency records; thread-safe and
    asyncio-safe (each step O(1) under a lock).

    Rate-limit keys are dropped once their state has fully decayed, idempotency records once
    they expire, so the dicts hold only what is still in force.
    """

    def __init__(self, *, clock: Clock | None = None) -> None:
        self._clock = clock or SYSTEM_CLOCK
        self._tats: dict[str, float] = {}
        self._records: dict[str, _Record] = {}
        self._lock = threading.Lock()

    def gcra(self, key: str, params: GcraParams, cost: int, max_wait: float) -> RateLimitDecision:
        """Run one GCRA step for ``key`` atomically, on this store's clock."""
        with self._lock:
            now = self._clock.now()
            decision, new_tat = gcra_step(params, self._tats.get(key), now, cost, max_wait)
            if new_tat is not None:
                self._tats[key] = new_tat
            if len(self._tats) > 1024:  # forget limits that have fully decayed
                self._tats = {k: t for k, t in self._tats.items() if t > now}
        return decision

    def gcra_admit(self, key: str, params: GcraParams, cost: int, max_wait: float) -> float:
        """The decorator's fast path: the wait (>= 0) if admitted, else -retry_after."""
        with self._lock:
            now = self._clock.now()
            new_tat, delay = gcra_admit(
                params.emission, params.tolerance, self._tats.get(key), now, cost, max_wait
            )
            if new_tat is None:
                return -delay
            self._tats[key] = new_tat
        return delay

    async def gcra_admit_async(
        self, key: str, params: GcraParams, cost: int, max_wait: float
    ) -> float:
        """``gcra_admit`` for coroutines (memory never blocks)."""
        return self.gcra_admit(key, params, cost, max_wait)

    async def gcra_async(
        self, key: str, params: GcraParams, cost: int, max_wait: float
    ) -> RateLimitDecision:
        """``gcra`` for coroutines (memory never blocks)."""
        return self.gcra(key, params, cost, max_wait)

    # -- idempotency records (see resilience._idempotency) -----------------------------------

    def idempotency_claim(self, key: str, fingerprint: str, lease: float) -> Claim:
        """Claim ``key`` for ``lease`` seconds, or say why not (replay, in progress, mismatch)."""
        with self._lock:
            now = self._clock.now()
            record = self._records.get(key)
            if record is not None and record.expires <= now:
                record = None  # done and expired, or its owner died: the key is free again
            if record is None:
                if len(self._records) > 1024:
                    self._records = {k: r for k, r in self._records.items() if r.expires > now}
                token = os.urandom(16).hex()  # opaque: 128 random bits, no UUID formatting
                self._records[key] = _Record(fingerprint, token, now + lease)
                return Claim("claimed", token)
            if record.fingerprint != fingerprint:
                return Claim("mismatch")
            if record.response is None:
                return Claim("in_progress")
            return Claim("replay", response=record.response)

    def idempotency_complete(self, key: str, token: str, response: bytes, ttl: float) -> bool:
        """Store the response of the claim ``token`` holds, for ``ttl`` seconds; ``False`` if
        the claim was lost (its lease ran out and another request took the key)."""
        with self._lock:
            record = self._records.get(key)
            if record is None or record.token != token or record.response is not None:
                return False
            record.response = response
            record.token = None
            record.expires = self._clock.now() + ttl
            return True

    def idempotency_release(self, key: str, token: str) -> None:
        """Forget the claim ``token`` holds (the request did nothing): a retry runs afresh."""
        with self._lock:
            record = self._records.get(key)
            if record is not None and record.token == token and record.response is None:
                del self._records[key]

    async def idempotency_claim_async(self, key: str, fingerprint: str, lease: float) -> Claim:
        return self.idempotency_claim(key, fingerprint, lease)

    async def idempotency_complete_async(
        self, key: str, token: str, response: bytes, ttl: float
    ) -> bool:
        return self.idempotency_complete(key, token, response, ttl)

    async def idempotency_release_async(self, key: str, token: str) -> None:
        self.idempotency_release(key, token)
