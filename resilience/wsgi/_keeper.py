"""The leases of running WSGI requests' claims: one daemon thread per middleware renews them
all every ``Idempotency.beat`` s (``lease / 3``; at most 1 s on Redis, which may restart empty)
while their handlers run, and retries completions the store could not take while it was down
(``Idempotency.next_beat``).

A request costs two dict operations under a lock (``hold``, ``drop``). The thread starts with
the first claim and ends after a beat with none left.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from resilience._idempotency.policy import Idempotency

__all__ = ["Held", "Keeper"]


class Held:
    """One claim kept alive: ``response`` set once it waits for the store to take it."""

    __slots__ = ("done", "fingerprint", "lock", "lost", "record", "response", "since", "token")

    def __init__(self, record: str, fingerprint: str, token: str) -> None:
        self.record, self.fingerprint, self.token = record, fingerprint, token
        self.lock = threading.Lock()  # held while a beat works on it
        self.done = False
        self.response: bytes | None = None
        self.since: float | None = None
        self.lost = False  # a beat found the claim taken: said once, not again at completion


class Keeper:
    """The heartbeat of one middleware's claims."""

    def __init__(self, rules: Idempotency) -> None:
        self.rules = rules
        self._held: dict[int, Held] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()

    def hold(self, record: str, fingerprint: str, token: str) -> Held:
        held = Held(record, fingerprint, token)
        self._add(held)
        return held

    def _add(self, held: Held) -> None:
        with self._lock:
            self._held[id(held)] = held
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._beat, name="resilience-idempotency-leases", daemon=True
                )
                self._thread.start()

    def drop(self, held: Held) -> None:
        """Stop renewing ``held`` (waiting for a beat working on it: a late renewal must not
        take back a record that is then released)."""
        with held.lock:
            held.done = True
        with self._lock:
            self._held.pop(id(held), None)

    def complete_later(self, held: Held, response: bytes) -> None:
        """The store was down when the handler finished: keep trying to store ``response``."""
        held.response, held.since, held.done = response, time.monotonic(), False
        self._add(held)
        self._wake.set()  # the first retry comes soon, not a whole beat later

    def _beat(self) -> None:
        rules = self.rules
        wait = rules.beat
        while True:
            self._wake.wait(wait)
            self._wake.clear()
            with self._lock:
                if not self._held:
                    self._thread = None
                    return
                batch = list(self._held.values())
            wait = rules.beat
            for held in batch:
                with held.lock:
                    if held.done:
                        continue
                    delay = self._step(held)
                    if delay is None:
                        held.done = True
                if delay is None:
                    with self._lock:
                        self._held.pop(id(held), None)
                else:
                    wait = min(wait, delay)

    def _step(self, held: Held) -> float | None:
        store: Any = self.rules.store
        if held.response is None:
            outcome = store.idempotency_renew(
                held.record, held.fingerprint, held.token, self.rules.lease
            )
        else:
            outcome = store.idempotency_complete(
                held.record, held.fingerprint, held.token, held.response, self.rules.ttl
            )
            if outcome == "stored":
                return None
        held.lost = outcome == "lost"
        return self.rules.next_beat(outcome, held.since, time.monotonic())
