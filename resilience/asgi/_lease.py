"""The lease of a running ASGI request's claim: renewed while the handler runs, and its
completion retried in the background while the store is down (``Idempotency.next_beat``).

One timer per request on the running loop (``call_later``: no task until a beat is due), so a
request that ends within ``lease / 3`` s costs a timer and its cancellation.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from resilience._idempotency.policy import OUTAGE_RETRY, Idempotency

__all__ = ["Lease"]


class Lease:
    """Keep ``token``'s claim on ``record`` alive until ``stop``; ``complete_later`` hands it
    a response to store once the store answers again."""

    __slots__ = (
        "_handle",
        "_loop",
        "_response",
        "_since",
        "_stopped",
        "_task",
        "fingerprint",
        "lost",
        "record",
        "rules",
        "token",
    )

    def __init__(self, rules: Idempotency, record: str, fingerprint: str, token: str) -> None:
        self.rules, self.record, self.fingerprint, self.token = rules, record, fingerprint, token
        self._loop = asyncio.get_running_loop()
        self._stopped = False
        self._task: asyncio.Task[None] | None = None
        self._response: bytes | None = None
        self._since: float | None = None
        self.lost = False  # a beat found the claim taken: said once, not again at completion
        self._handle: asyncio.TimerHandle | None = self._loop.call_later(
            rules.lease / 3.0, self._beat
        )

    def _beat(self) -> None:
        self._task = self._loop.create_task(self._step())

    async def _step(self) -> None:
        store: Any = self.rules.store
        if self._response is None:
            outcome = await store.idempotency_renew_async(
                self.record, self.fingerprint, self.token, self.rules.lease
            )
        else:
            outcome = await store.idempotency_complete_async(
                self.record, self.fingerprint, self.token, self._response, self.rules.ttl
            )
            if outcome == "stored":
                return  # stored at last
        if self._stopped:
            return
        self.lost = outcome == "lost"
        delay = self.rules.next_beat(outcome, self._since, time.monotonic())
        if delay is not None:
            self._handle = self._loop.call_later(delay, self._beat)

    async def stop(self) -> None:
        """No more renewals; wait for one in flight (a late renewal must not take back a
        record that is then released)."""
        self._stopped = True
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        task = self._task
        if task is not None and not task.done():
            await asyncio.wait({task})

    def complete_later(self, response: bytes) -> None:
        """The store was down when the handler finished: retry the completion in the
        background (the response goes to the client meanwhile; retries get 409 or 503)."""
        self._response, self._since, self._stopped = response, time.monotonic(), False
        self._handle = self._loop.call_later(OUTAGE_RETRY, self._beat)
