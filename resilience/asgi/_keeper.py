"""The leases of running ASGI requests' claims: one task per middleware and event loop renews
them all every ``lease / 3`` s while their handlers run, and retries completions the store
could not take while it was down (``Idempotency.next_beat``).

A request costs two dict operations (``hold``, ``drop``): no timer, no task of its own. The
task starts with the first claim and ends after a beat with none left.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from resilience._idempotency.policy import Idempotency

__all__ = ["Held", "Keeper"]


class Held:
    """One claim kept alive: ``response`` set once it waits for the store to take it."""

    __slots__ = ("busy", "done", "fingerprint", "lost", "record", "response", "since", "token")

    def __init__(self, record: str, fingerprint: str, token: str) -> None:
        self.record, self.fingerprint, self.token = record, fingerprint, token
        self.busy: asyncio.Future[None] | None = None  # set while a beat works on it
        self.done = False
        self.lost = False  # a beat found the claim taken: said once, not again at completion
        self.response: bytes | None = None
        self.since: float | None = None


class Keeper:
    """The heartbeat of one middleware's claims, on the event loop that serves them."""

    def __init__(self, rules: Idempotency) -> None:
        self.rules = rules
        self._held: dict[int, Held] = {}
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None

    def hold(self, record: str, fingerprint: str, token: str) -> Held:
        held = Held(record, fingerprint, token)
        self._add(held)
        return held

    def _add(self, held: Held) -> None:
        self._held[id(held)] = held
        task = self._task
        if task is None or task.done() or self._loop is not asyncio.get_running_loop():
            self._loop = asyncio.get_running_loop()
            self._wake = asyncio.Event()
            self._task = self._loop.create_task(self._beat(self._wake))

    async def drop(self, held: Held) -> None:
        """Stop renewing ``held``, waiting for a beat working on it (a late renewal must not
        take back a record that is then released)."""
        held.done = True
        self._held.pop(id(held), None)
        busy = held.busy
        if busy is not None:
            await asyncio.wait({busy})

    def complete_later(self, held: Held, response: bytes) -> None:
        """The store was down when the handler finished: keep trying to store ``response``."""
        held.response, held.since, held.done = response, time.monotonic(), False
        self._add(held)
        assert self._wake is not None
        self._wake.set()  # the first retry comes soon, not a whole lease / 3 later

    async def _beat(self, wake: asyncio.Event) -> None:
        rules = self.rules
        wait = rules.lease / 3.0
        while True:
            try:
                await asyncio.wait_for(wake.wait(), wait)
            except asyncio.TimeoutError:
                pass
            wake.clear()
            if not self._held:
                if self._task is asyncio.current_task():
                    self._task = None
                return
            wait = rules.lease / 3.0
            for held in list(self._held.values()):
                if held.done:
                    continue
                held.busy = asyncio.get_running_loop().create_future()
                try:
                    delay = await self._step(held)
                finally:
                    busy, held.busy = held.busy, None
                    busy.set_result(None)
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
