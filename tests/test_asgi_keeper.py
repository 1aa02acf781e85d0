"""The ASGI idempotency middleware's lease heartbeat in process, under asyncio and trio: claims
renewed while their handler runs, completions the store refused retried, the beat gone once
nothing is held. (tests/test_asgi_trio.py drives the same behind a real trio server.)"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from resilience.asgi import IdempotencyMiddleware
from resilience.stores import MemoryStore
from resilience.testing import FakeClock
from tests.conftest import Colour

LEASE = 0.03  # seconds: the heartbeat beats every 10 ms of real time
WAIT = 10.0  # the bound on every wait: a bug fails the test instead of hanging it


class WatchedStore(MemoryStore):
    """A ``MemoryStore`` on a fake clock that says when a claim was renewed (at which fake
    time) and when a response was stored; it refuses the first ``refusals`` completions as a
    store that is down would."""

    def __init__(self, clock: FakeClock, refusals: int = 0) -> None:
        super().__init__(clock=clock)
        self.clock, self.refusals = clock, refusals
        self.renewed_at = -1.0
        self.changed: anyio.Event | None = None  # made inside the run (asyncio's or trio's)
        self.stored = 0

    def _tell(self) -> None:
        if self.changed is not None:
            self.changed.set()
            self.changed = anyio.Event()

    async def idempotency_renew_async(self, *args: Any) -> Any:
        at = self.clock.now()  # the renewal reads the clock later: at least this
        outcome = await super().idempotency_renew_async(*args)
        self.renewed_at = max(self.renewed_at, at)
        self._tell()
        return outcome

    async def idempotency_complete_async(self, *args: Any) -> Any:
        if self.refusals:
            self.refusals -= 1
            return "unavailable"
        outcome = await super().idempotency_complete_async(*args)
        self.stored += outcome == "stored"
        self._tell()
        return outcome

    async def until(self, condition: Any) -> None:
        """Wait (bounded) until ``condition()`` holds, woken by each renewal or completion."""
        with anyio.fail_after(WAIT):
            while not condition():
                assert self.changed is not None
                await self.changed.wait()


class Charges:
    """The app: counts runs; a run may wait for ``release``."""

    def __init__(self, hold: bool) -> None:
        self.runs = 0
        self.hold = hold
        self.started = anyio.Event()
        self.release = anyio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await receive()
        self.runs += 1
        self.started.set()
        if self.hold and self.runs == 1:
            await self.release.wait()
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b'{"charge": %d}' % self.runs})


async def post(app: Any, key: bytes = b'"k-1"') -> tuple[int, dict[bytes, bytes], bytes]:
    """One POST with ``key`` through ``app`` in process: status, headers, body."""
    sent: list[Any] = []
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/charges",
        "query_string": b"",
        "headers": [(b"idempotency-key", key), (b"authorization", b"Bearer alice")],
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = sent[0]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], dict(start.get("headers", [])), body


def test_a_claim_is_renewed_while_its_handler_runs(async_colour: Colour) -> None:
    """While the first run waits, each time the store's time moves 0.9 of a lease on the
    heartbeat renews the claim: retries get 409 (2.7 leases in all), then the stored
    response is replayed and the app ran once."""

    async def scenario() -> tuple[list[int], int, int]:
        store = WatchedStore(FakeClock())
        store.changed = anyio.Event()
        charges = Charges(hold=True)
        app = IdempotencyMiddleware(charges, store=store, lease=LEASE)
        answers: list[int] = []
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(post, app)
            with anyio.fail_after(WAIT):
                await charges.started.wait()
            for _ in range(3):
                store.clock.advance(0.9 * LEASE)  # without a renewal since, the claim expires
                moment = store.clock.now()
                await store.until(lambda moment=moment: store.renewed_at >= moment)
                answers.append((await post(app))[0])
            charges.release.set()
        status, headers, _ = await post(app)
        assert headers[b"idempotent-replayed"] == b"true"
        return answers, status, charges.runs

    assert async_colour.run(scenario) == ([409, 409, 409], 201, 1)


def test_a_completion_the_store_refused_is_stored_by_the_heartbeat(async_colour: Colour) -> None:
    """The store refuses the first two completions (down): the heartbeat keeps trying, the
    first soon after, until it is stored; the retry is then replayed, the app ran once."""

    async def scenario() -> tuple[int, int, int, bool]:
        store = WatchedStore(FakeClock(), refusals=2)
        store.changed = anyio.Event()
        charges = Charges(hold=False)
        app = IdempotencyMiddleware(charges, store=store, lease=LEASE)
        first = await post(app)
        await store.until(lambda: store.stored == 1)
        again = await post(app)
        return first[0], again[0], charges.runs, again[2] == first[2]

    assert async_colour.run(scenario) == (201, 201, 1, True)


@pytest.mark.parametrize("runs", [1, 2])
def test_the_heartbeat_ends_with_nothing_held_and_starts_again(
    async_colour: Colour, runs: int
) -> None:
    """Once nothing is held the beat returns; the next claim starts a new one, also in a new
    run of the event loop (a new asyncio loop or trio run, as in a restarted server)."""
    store = WatchedStore(FakeClock())
    app = IdempotencyMiddleware(Charges(hold=False), store=store, lease=LEASE)
    beats = []

    async def scenario() -> None:
        store.changed = anyio.Event()
        assert (await post(app, b'"k-%d"' % len(beats)))[0] == 201  # a new key: a new claim
        beat = app._keeper._beat
        assert beat is not None and beat not in beats
        beats.append(beat)
        for _ in range(1000):  # bounded; the beat sets a flag, nothing to await
            if beat.over:
                return
            await anyio.sleep(LEASE / 3)

    for _ in range(runs):
        async_colour.run(scenario)
    assert len(beats) == runs and all(beat.over for beat in beats)
