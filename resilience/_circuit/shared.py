"""A circuit breaker shared by a fleet: its window and state live in Redis.

The rules are those of ``state.py``, run by ``stores/breaker.lua`` as one atomic script per
step on Redis's clock, so replicas with skewed clocks agree on when ``open_for`` ends. Cost: one
round trip per admit and one per record (a release costs one only for a half-open trial). The
half-open trials are leases (``SET NX PX`` with an owner token per permit): exactly
``half_open_calls`` run across the fleet, only their owners' outcomes count, and a lease whose
owner died expires after ``trial_lease`` seconds. Keys are ``prefix{name}:breaker``,
``...:window`` and ``...:trial:<n>``, hash-tagged by name (one cluster slot), and expire after
``2 * max(window, open_for, trial_lease) + 60`` seconds without writes: a forgotten breaker is a
closed, empty one. Replicas sharing a name must share its settings: each step applies the
caller's.

When Redis is unavailable, no ``RedisError`` reaches the caller: with the store's
``on_error="allow"`` calls run as if the breaker were closed (their outcomes are not recorded);
with "deny" they are refused with ``CircuitOpenError`` (``retry_after`` 0.0: nobody knows when
Redis returns). The store logs and emits once per outage.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

from resilience import _events
from resilience._circuit.state import CircuitState
from resilience._clock import Clock
from resilience._errors import CircuitOpenError
from resilience.stores._protocols import ScriptStore, check_script_store

__all__ = ["Permit", "SharedCircuit", "Step"]

Changes = list[tuple[CircuitState, CircuitState]]
_STATES = (CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN)
_KIND = "circuit breaker"
_SLICES = 10  # as TimeWindow's default

# (generation, trial slot or 0, owner token); None: admitted while Redis was unavailable.
Permit = tuple[int, int, bytes] | None
_NO_PERMIT = (0, 0, b"-")


class Step(NamedTuple):
    """One script reply: the verdict (C, T, R or -) and where the breaker stands after it."""

    verdict: str
    state: CircuitState
    generation: int
    slot: int
    retry_after: float
    calls: int
    failures: int
    slow: int
    changes: Changes


def parse(reply: Any) -> Step:
    """Decode the script's one-string reply (bytes or str, as the client decodes)."""
    text = reply.decode() if isinstance(reply, bytes) else reply
    verdict, state, gen, slot, retry_ms, calls, failures, slow, changes = text.split()
    moves = [] if changes == "-" else changes
    return Step(
        verdict,
        _STATES[int(state)],
        int(gen),
        int(slot),
        float(retry_ms) / 1000.0,
        int(calls),
        int(failures),
        int(slow),
        [(_STATES[int(moves[i])], _STATES[int(moves[i + 1])]) for i in range(0, len(moves), 2)],
    )


class SharedCircuit:
    """The Redis side of one ``CircuitBreaker``: builds each script call and reads its reply.

    It is given what it needs from its breaker, and knows nothing else of it: the ``name``, the
    settings, the lifetime ``totals`` (successes, failures, rejections, interrupted) and the
    ``lock`` guarding them, the ``clock`` timing calls against ``settings["slow_call_duration"]``,
    and ``announce`` for the transitions a reply reports. The breaker's shells call its steps.
    Thread-safe and asyncio-safe: Redis serializes the steps; ``last`` is the state seen in the
    latest reply, for ``repr`` and for observers that cannot wait.
    """

    __slots__ = (
        "_announce",
        "_clock",
        "_config",
        "_keys",
        "_lock",
        "_script",
        "_slow_call_duration",
        "_tokens",
        "_totals",
        "last",
        "name",
        "store",
    )

    closed_permit = None  # a shared call always takes an admit step (the shells read this)

    def __init__(
        self,
        store: ScriptStore,
        name: str,
        settings: dict[str, Any],
        *,
        totals: list[int],
        lock: threading.Lock,
        clock: Clock,
        announce: Callable[[Changes], None],
    ) -> None:
        self.store = check_script_store(store)
        self.name = name
        self._totals, self._lock, self._clock, self._announce = totals, lock, clock, announce
        self._slow_call_duration: float | None = settings["slow_call_duration"]
        open_for, window = settings["open_for"], settings["window"]
        trial_lease = settings["trial_lease"]
        if trial_lease is None:
            trial_lease = max(open_for, 10.0)
        slow_call_rate = settings["slow_call_rate"]
        if settings["slow_call_duration"] is None:
            slow_call_rate = None  # slow calls count only when a duration is configured
        # Keys and configuration encoded once: redis-py passes bytes through (see _scripts).
        self._keys = [
            store.key(name, "breaker").encode(),
            store.key(name, "window").encode(),
            *(
                store.key(name, f"trial:{n}").encode()
                for n in range(1, settings["half_open_calls"] + 1)
            ),
        ]
        ttl = 2.0 * max(window, open_for, trial_lease) + 60.0
        self._config = " ".join(
            [
                repr(float(settings["failure_rate"])),
                str(settings["minimum_calls"]),
                repr(open_for * 1000.0),
                "-1" if slow_call_rate is None else repr(float(slow_call_rate)),
                repr(window * 1000.0),
                str(settings["window_calls"] or 0),
                str(_SLICES),
                str(max(1, math.ceil(trial_lease * 1000.0))),
                str(math.ceil(ttl * 1000.0)),
            ]
        ).encode()
        self._script = store.script("breaker")
        # An owner token per permit: this instance's random id and a counter (unique, cheap).
        owner = os.urandom(8).hex().encode()
        self._tokens = map((owner + b":%d").__mod__, itertools.count())
        self.last = CircuitState.CLOSED

    def _args(
        self, op: bytes, permit: Permit, failed: bool, slow: bool, now_ms: float | None
    ) -> list[bytes]:
        gen, slot, token = permit if permit is not None else _NO_PERMIT
        return [
            op,
            b"" if now_ms is None else repr(now_ms).encode(),
            self._config,
            b"%d %d %s %d %d" % (gen, slot, token, failed, slow),
        ]

    # -- steps: op is a (admit), r (record), x (release), p (poll), o / c (force) --------------

    def step(
        self,
        op: bytes,
        permit: Permit = None,
        failed: bool = False,
        slow: bool = False,
        now_ms: float | None = None,
    ) -> Step | None:
        """Run one step (sync clients); ``None`` when Redis is unavailable. ``now_ms`` pins
        the script's clock (tests only: production steps run on Redis ``TIME``)."""
        if self.store.is_async:
            raise TypeError(
                f"circuit breaker {self.name!r}: its store wraps a redis.asyncio "
                "client, which cannot serve sync code; give it a redis.Redis client"
            )
        args = self._args(op, permit, failed, slow, now_ms)
        reply = self.store.run(self._script, self._keys, args, _KIND, self.name)
        return self._seen(reply)

    async def step_async(
        self, op: bytes, permit: Permit = None, failed: bool = False, slow: bool = False
    ) -> Step | None:
        """``step`` for ``redis.asyncio`` clients."""
        args = self._args(op, permit, failed, slow, None)
        reply = await self.store.run_async(self._script, self._keys, args, _KIND, self.name)
        return self._seen(reply)

    def poll(self) -> tuple[CircuitState, int, int, int]:
        """State and window counts, one round trip; with a ``redis.asyncio`` client (or while
        Redis is unavailable) the state seen last and an unknown (empty) window, without I/O."""
        step = None if self.store.is_async else self.step(b"p")
        if step is None:
            return self.last, 0, 0, 0
        return step.state, step.calls, step.failures, step.slow

    async def poll_async(self) -> CircuitState:
        """The fleet's state, one round trip on any client (the state seen last while Redis
        is unavailable)."""
        step = await self.step_async(b"p") if self.store.is_async else self.step(b"p")
        return self.last if step is None else step.state

    async def force_async(self, op: bytes) -> None:
        """Open (b"o") or close (b"c") the fleet's breaker from a coroutine."""
        if self.store.is_async:
            await self.step_async(op)
        else:
            self.step(op)

    def _seen(self, reply: Any) -> Step | None:
        if reply is None:
            return None
        step = parse(reply)
        self.last = step.state
        if step.changes:
            self._announce(step.changes)
        return step

    # -- what the shells call ------------------------------------------------------------------

    def admit(self) -> Permit:
        """A permit (one round trip), or raise ``CircuitOpenError``."""
        token = next(self._tokens)
        return self._permit(self.step(b"a", (0, 0, token)), token)

    async def admit_async(self) -> Permit:
        token = next(self._tokens)
        return self._permit(await self.step_async(b"a", (0, 0, token)), token)

    def _permit(self, step: Step | None, token: bytes) -> Permit:
        if step is not None and step.verdict != "R":
            return (step.generation, step.slot, token)
        if step is None and self.store.on_error == "allow":
            return None  # Redis is unavailable: run as if closed, and record nothing
        retry_after = 0.0 if step is None else step.retry_after
        with self._lock:
            self._totals[2] += 1
        if _events.listeners:
            _events.emit(_events.CallRejected(self.name, retry_after))
        raise CircuitOpenError(self.name, retry_after)

    def _slow(self, failed: bool, started: float) -> bool:
        with self._lock:
            self._totals[failed] += 1
        limit = self._slow_call_duration
        return limit is not None and self._clock.now() - started >= limit

    def record(self, permit: Permit, failed: bool, started: float) -> None:
        """Record an outcome (one round trip; none for a call admitted during an outage)."""
        slow = self._slow(failed, started)
        if permit is not None:
            self.step(b"r", permit, failed, slow)

    async def record_async(self, permit: Permit, failed: bool, started: float) -> None:
        slow = self._slow(failed, started)
        if permit is not None:
            await self.step_async(b"r", permit, failed, slow)

    def _interrupted(self, permit: Permit) -> bool:
        with self._lock:
            self._totals[3] += 1
        return permit is not None and permit[1] > 0  # only a trial holds something to free

    def release(self, permit: Permit) -> None:
        """Free a trial's lease without an outcome (a closed permit holds nothing)."""
        if self._interrupted(permit):
            self.step(b"x", permit)

    async def release_async(self, permit: Permit) -> None:
        if self._interrupted(permit):
            await self.step_async(b"x", permit)

    # -- what the shells are given -----------------------------------------------------------

    def steps(self, coroutines: bool) -> tuple[Callable[..., Any], ...]:
        """``admit``, ``record`` and ``release`` for the breaker's sync shell, or their
        coroutine twins for its async shell; refuse a shell the client cannot serve."""
        if coroutines and not self.store.is_async:
            raise TypeError(
                f"circuit breaker {self.name!r}: its store wraps a sync redis client, which "
                "would block the event loop; give it a redis.asyncio.Redis client"
            )
        if not coroutines and self.store.is_async:
            raise TypeError(
                f"circuit breaker {self.name!r}: its store wraps a redis.asyncio client, which "
                "cannot guard a sync function; give it a redis.Redis client"
            )
        if coroutines:
            return self.admit_async, self.record_async, self.release_async
        return self.admit, self.record, self.release
