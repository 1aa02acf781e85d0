"""The leases of running ASGI requests' claims: one task per middleware and event loop renews
them all every ``Idempotency.beat`` s (``lease / 3``; at most 1 s on Redis, which may restart
empty) while their handlers run, and retries completions the store could not take while it
was down (``Idempotency.next_beat``).

A request costs two dict operations (``hold``, ``drop``): no timer, no task of its own. The
task starts with the first claim and ends after a beat with none left: an asyncio task, or
under trio (which has no detached tasks) a system task of the run. The beat waits on
``_wake``'s wake-ups, so its body is the same under both.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from resilience._clock import async_library
from resilience._idempotency.policy import Idempotency
from resilience._wake import AsyncWake, async_wake

__all__ = ["Held", "Keeper"]

_log = logging.getLogger("resilience")

# The loop running this thread, or None (under trio): unlike get_running_loop, never raises.
_running_loop = asyncio._get_running_loop


class Held:
    """One claim kept alive: ``response`` set once it waits for the store to take it."""

    __slots__ = ("busy", "done", "fingerprint", "lost", "record", "response", "since", "token")

    def __init__(self, record: str, fingerprint: str, token: str) -> None:
        self.record, self.fingerprint, self.token = record, fingerprint, token
        self.busy: AsyncWake | None = None  # set while a beat works on it
        self.done = False
        self.lost = False  # a beat found the claim taken: said once, not again at completion
        self.response: bytes | None = None
        self.since: float | None = None


class _Beat:
    """One heartbeat task: ``wake`` cuts its current wait short; ``over`` once it returned."""

    __slots__ = ("over", "task", "wake")

    def __init__(self) -> None:
        self.over = False
        self.wake = async_wake()
        self.task: object = None  # the asyncio task, kept referenced while it runs


class Keeper:
    """The heartbeat of one middleware's claims, on the event loop that serves them."""

    def __init__(self, rules: Idempotency) -> None:
        self.rules = rules
        self._held: dict[int, Held] = {}
        self._beat: _Beat | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the beat's loop (None: trio)

    def hold(self, record: str, fingerprint: str, token: str) -> Held:
        held = Held(record, fingerprint, token)
        self._add(held)
        return held

    def _add(self, held: Held) -> None:
        self._held[id(held)] = held
        beat = self._beat
        if beat is None or beat.over or self._loop is not _running_loop():
            self._start()

    def _start(self) -> None:
        self._beat = beat = _Beat()
        self._loop = _running_loop()
        if async_library() == "asyncio":
            beat.task = asyncio.get_running_loop().create_task(self._run(beat))
        else:
            import trio

            trio.lowlevel.spawn_system_task(self._run, beat, name="resilience idempotency leases")

    async def drop(self, held: Held) -> None:
        """Stop renewing ``held``, waiting for a beat working on it (a late renewal must not
        take back a record that is then released)."""
        held.done = True
        self._held.pop(id(held), None)
        busy = held.busy
        if busy is not None:
            await busy.wait(None)

    def complete_later(self, held: Held, response: bytes) -> None:
        """The store was down when the handler finished: keep trying to store ``response``."""
        held.response, held.since, held.done = response, time.monotonic(), False
        self._add(held)
        assert self._beat is not None
        self._beat.wake.set()  # the first retry comes soon, not a whole beat later

    async def _run(self, beat: _Beat) -> None:
        """Beat until no claim is left; a failure is logged (under trio it would end the run)
        and the next claim starts a new beat."""
        try:
            await self._beats(beat)
        except Exception:
            _log.exception("idempotency %r: the lease heartbeat failed", self.rules.name)
        finally:
            beat.over = True

    async def _beats(self, beat: _Beat) -> None:
        rules = self.rules
        wait = rules.beat
        while True:
            await beat.wake.wait(wait)
            beat.wake = async_wake()
            if not self._held:
                return
            wait = rules.beat
            for held in list(self._held.values()):
                if held.done:
                    continue
                held.busy = busy = async_wake()
                try:
                    delay = await self._step(held)
                finally:
                    held.busy = None
                    busy.set()
                if delay is None:
                    held.done = True
                    self._held.pop(id(held), None)
                else:
                    wait = min(wait, delay)

    async def _step(self, held: Held) -> float | None:
        store: Any = self.rules.store
        if held.response is None:
            outcome = await store.idempotency_renew_async(
                held.record, held.fingerprint, held.token, self.rules.lease
            )
        else:
            outcome = await store.idempotency_complete_async(
                held.record, held.fingerprint, held.token, held.response, self.rules.ttl
            )
            if outcome == "stored":
                return None
        held.lost = outcome == "lost"
        return self.rules.next_beat(outcome, held.since, time.monotonic())
