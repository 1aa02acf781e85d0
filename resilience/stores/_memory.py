"""MemoryStore: the embedded default; state in dicts, each step atomic under one lock.

Every step is O(1) amortised, however many keys the store holds, and the store is bounded:

- GCRA TATs: a dict, and a min-heap with one ``(deadline, key)`` entry per key whose deadline
  is at most the key's TAT. TATs only grow, so an update touches the dict alone; when an entry
  comes due, the key is dropped if its TAT has passed (its limit fully refilled: the same as no
  state) or the entry is pushed again at the TAT. Past ``max_limit_keys`` the key nearest to
  refilled is forgotten (looked for among the heap's first ``_SWEEP`` entries), which lets
  that caller start afresh (rate limits fail open there).
- Idempotency records: a dict; running claims also in a heap of lease ends (entries of claims
  since completed or released are skipped when they come due, and the heap is compacted from
  its own entries, never from the records, once they outnumber the live ones), completed
  records also in an ordered dict, oldest first. Past ``max_records`` records or
  ``max_record_bytes`` of stored responses the oldest completed records are forgotten first;
  a claim that finds the store full of running claims is answered "unavailable" (the
  middleware's 503): a running claim is never dropped.

Clean-up happens where the tables grow (a new key, a new claim), at most ``_SWEEP`` steps at a
time, so no call pays for a crowd of expiries and a known key's step is a dict write.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
from collections import OrderedDict

from resilience._clock import SYSTEM_CLOCK, Clock
from resilience._gcra import GcraParams, RateLimitDecision, gcra_admit, gcra_step
from resilience.stores._protocols import Claim, Completion, Renewal

__all__ = ["MemoryStore"]

_log = logging.getLogger("resilience")
_SWEEP = 8  # clean-up steps per call, at most: more than the one entry a call may add


def _check_bound(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return value


class _Record:
    """One idempotency key: running (``token`` holds it until ``expires``) or done."""

    __slots__ = ("expires", "fingerprint", "response", "seq", "token")

    def __init__(self, fingerprint: str, token: str, expires: float, seq: int) -> None:
        self.fingerprint = fingerprint
        self.token: str | None = token
        self.expires = expires
        self.response: bytes | None = None
        self.seq = seq  # tells this record's heap entry from a former record's under its key


class MemoryStore:
    """In-process state for rate limiters and idempotency records; thread-safe and
    asyncio-safe (each step O(1) amortised under a lock).

    ``max_limit_keys`` bounds the rate limiters' table (one entry per limiter and partition
    not yet refilled); ``max_records`` and ``max_record_bytes`` bound the idempotency records
    (count, and bytes of stored responses). See the module's docstring for what happens past
    them. Expired state is dropped as it comes due.
    """

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        max_limit_keys: int = 100_000,
        max_records: int = 100_000,
        max_record_bytes: int = 64 << 20,
    ) -> None:
        self.max_limit_keys = _check_bound(max_limit_keys, "max_limit_keys")
        self.max_records = _check_bound(max_records, "max_records")
        self.max_record_bytes = _check_bound(max_record_bytes, "max_record_bytes")
        self._clock = clock or SYSTEM_CLOCK
        self._tats: dict[str, float] = {}
        self._tat_due: list[tuple[float, str]] = []
        self._records: dict[str, _Record] = {}
        self._leases: list[tuple[float, int, str]] = []
        self._running = 0
        self._done: OrderedDict[str, None] = OrderedDict()
        self._done_bytes = 0
        self._seq = itertools.count()
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    # -- rate limiting ---------------------------------------------------------------------

    def gcra(self, key: str, params: GcraParams, cost: int, max_wait: float) -> RateLimitDecision:
        """Run one GCRA step for ``key`` atomically, on this store's clock."""
        with self._lock:
            now = self._clock.now()
            tat = self._tats.get(key)
            decision, new_tat = gcra_step(params, tat, now, cost, max_wait)
            if new_tat is not None:
                if tat is not None:  # the key has its heap entry; a TAT only grows
                    self._tats[key] = new_tat
                else:
                    self._insert_tat_locked(key, new_tat, now)
        return decision

    def gcra_admit(self, key: str, params: GcraParams, cost: int, max_wait: float) -> float:
        """The decorator's fast path: the wait (>= 0) if admitted, else -retry_after."""
        with self._lock:
            now = self._clock.now()
            tat = self._tats.get(key)
            new_tat, delay = gcra_admit(params.emission, params.tolerance, tat, now, cost, max_wait)
            if new_tat is None:
                return -delay
            if tat is not None:
                self._tats[key] = new_tat
            else:
                self._insert_tat_locked(key, new_tat, now)
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

    def _insert_tat_locked(self, key: str, tat: float, now: float) -> None:
        """A key new to the table. Only the table's growth needs clean-up, so this is where
        it happens: known keys are updated in place, at the cost of a dict write."""
        due = self._tat_due
        if due and due[0][0] <= now:
            self._sweep_tats_locked(now)
        if len(self._tats) >= self.max_limit_keys:
            self._evict_tat_locked()
        self._tats[key] = tat
        heapq.heappush(self._tat_due, (tat, key))

    def _sweep_tats_locked(self, now: float) -> None:
        due, tats = self._tat_due, self._tats
        for _ in range(_SWEEP):
            if not due or due[0][0] > now:
                return
            key = due[0][1]
            tat = tats[key]
            if tat <= now:  # fully refilled: the same as no state
                heapq.heappop(due)
                del tats[key]
            else:
                heapq.heapreplace(due, (tat, key))

    def _evict_tat_locked(self) -> None:
        """Forget the key nearest to refilled: the heap's first entry once it is up to date.
        At most ``_SWEEP`` stale entries are brought up to date per eviction (each one moved
        past by an update since), then the first entry goes whatever its key's TAT: a table
        of keys all updated since their entry was pushed never costs one call a walk of it."""
        due, tats = self._tat_due, self._tats
        for _ in range(_SWEEP):
            deadline, key = due[0]
            tat = tats[key]
            if tat == deadline:
                break
            heapq.heapreplace(due, (tat, key))
        del tats[heapq.heappop(due)[1]]
        self._warn_full("max_limit_keys", "forgetting the rate-limit state nearest to expiry")

    # -- idempotency records (the IdempotencyStore protocol) --------------------------------

    def idempotency_claim(self, key: str, fingerprint: str, lease: float) -> Claim:
        """Claim ``key`` for ``lease`` seconds, or say why not (replay, in progress, mismatch;
        unavailable when the store is full of running claims)."""
        with self._lock:
            now = self._clock.now()
            self._sweep_records_locked(now)
            record = self._records.get(key)
            if record is not None and record.expires <= now:
                self._forget_locked(key, record)  # done and expired, or its owner died
                record = None
            if record is None:
                if len(self._records) >= self.max_records and not self._evict_done_locked():
                    self._warn_full("max_records", "refusing new claims while all are running")
                    return Claim("unavailable")
                token = os.urandom(16).hex()  # opaque: 128 random bits, no UUID formatting
                seq = next(self._seq)
                self._records[key] = _Record(fingerprint, token, now + lease, seq)
                self._running += 1
                heapq.heappush(self._leases, (now + lease, seq, key))
                return Claim("claimed", token)
            if record.fingerprint != fingerprint:
                return Claim("mismatch")
            if record.response is None:
                return Claim("in_progress")
            return Claim("replay", response=record.response)

    def idempotency_renew(self, record: str, fingerprint: str, token: str, lease: float) -> Renewal:
        """Extend the claim ``token`` holds by ``lease`` seconds from now (its lease entry is
        pushed again when it comes due); take the record again if it vanished or expired
        unclaimed; ``"lost"`` if another claim holds or finished it."""
        with self._lock:
            now = self._clock.now()
            held = self._held_locked(record, fingerprint, token, now)
            if held is None:
                return "lost"
            held.expires = now + lease
            return "renewed"

    def idempotency_complete(
        self, record: str, fingerprint: str, token: str, response: bytes, ttl: float
    ) -> Completion:
        """Keep ``response`` for ``ttl`` seconds under the claim ``token`` holds (a record that
        vanished or expired unclaimed is taken again, as on Redis); ``"lost"`` if another
        claim holds or finished it."""
        with self._lock:
            now = self._clock.now()
            held = self._held_locked(record, fingerprint, token, now)
            if held is None:
                return "lost"
            held.response = response
            held.token = None
            held.expires = now + ttl
            self._running -= 1  # its lease entry is skipped when it comes due
            self._done[record] = None
            self._done_bytes += len(response)
            while self._done_bytes > self.max_record_bytes and next(iter(self._done)) != record:
                self._evict_done_locked()  # never the response just stored: its retry would run
            return "stored"

    def _held_locked(self, record: str, fingerprint: str, token: str, now: float) -> _Record | None:
        """The running record ``token`` holds, made again for it if the key is free (gone, or
        expired); ``None`` if another claim holds or finished it (or the store is full)."""
        found = self._records.get(record)
        if found is not None and found.expires <= now:
            self._forget_locked(record, found)
            found = None
        if found is None:
            if len(self._records) >= self.max_records and not self._evict_done_locked():
                return None
            seq = next(self._seq)
            found = self._records[record] = _Record(fingerprint, token, now, seq)
            self._running += 1
            heapq.heappush(self._leases, (now, seq, record))  # pushed on to its lease end
        return found if found.token == token and found.response is None else None

    def idempotency_release(self, record: str, token: str) -> None:
        """Forget the claim ``token`` holds (the request did nothing): a retry runs afresh."""
        with self._lock:
            found = self._records.get(record)
            if found is not None and found.token == token and found.response is None:
                self._forget_locked(record, found)

    async def idempotency_claim_async(self, record: str, fingerprint: str, lease: float) -> Claim:
        return self.idempotency_claim(record, fingerprint, lease)

    async def idempotency_renew_async(
        self, record: str, fingerprint: str, token: str, lease: float
    ) -> Renewal:
        return self.idempotency_renew(record, fingerprint, token, lease)

    async def idempotency_complete_async(
        self, record: str, fingerprint: str, token: str, response: bytes, ttl: float
    ) -> Completion:
        return self.idempotency_complete(record, fingerprint, token, response, ttl)

    async def idempotency_release_async(self, record: str, token: str) -> None:
        self.idempotency_release(record, token)

    def _forget_locked(self, key: str, record: _Record) -> None:
        del self._records[key]
        if record.response is None:
            self._running -= 1  # its lease entry is skipped when it comes due
        else:
            del self._done[key]
            self._done_bytes -= len(record.response)

    def _evict_done_locked(self) -> bool:
        """Forget the oldest completed record; ``False`` if there is none."""
        if not self._done:
            return False
        key, _ = self._done.popitem(last=False)
        response = self._records.pop(key).response
        assert response is not None
        self._done_bytes -= len(response)
        self._warn_full("max_records/max_record_bytes", "forgetting the oldest stored responses")
        return True

    def _sweep_records_locked(self, now: float) -> None:
        done, records = self._done, self._records
        for _ in range(_SWEEP):  # completed records, oldest first
            if not done:
                break
            key = next(iter(done))
            finished = records[key]
            if finished.expires > now:
                break
            self._forget_locked(key, finished)
        leases = self._leases
        for _ in range(_SWEEP):  # running claims, by lease end
            if not leases or leases[0][0] > now:
                break
            _, seq, key = leases[0]
            running = records.get(key)
            if running is None or running.seq != seq or running.response is not None:
                heapq.heappop(leases)  # released, completed, or a former record's entry
            elif running.expires <= now:  # its owner died
                heapq.heappop(leases)
                self._forget_locked(key, running)
            else:  # renewed: due later
                heapq.heapreplace(leases, (running.expires, seq, key))
        if len(leases) > 2 * self._running + 1024:
            self._compact_leases_locked()

    def _compact_leases_locked(self) -> None:
        """Drop the heap's stale entries (claims since completed or released), walking the
        heap alone, never the records: O(heap size), done only once stale entries outnumber
        live ones by 1,024, so each stale entry pays for its own removal (amortised O(1))."""
        records = self._records
        live = []
        for entry in self._leases:
            running = records.get(entry[2])
            if running is not None and running.seq == entry[1] and running.response is None:
                live.append((running.expires, entry[1], entry[2]))
        heapq.heapify(live)
        self._leases = live

    def _warn_full(self, bound: str, doing: str) -> None:
        if bound not in self._warned:  # once per store and bound: a full store is a state
            self._warned.add(bound)
            _log.warning("resilience: MemoryStore reached %s; %s", bound, doing)
