"""replay / replay_async over a real loopback server: a ledger behind our
IdempotencyMiddleware. Entries are sent again with their keys, settled by the answer, bounded
by count, time and failures, and stopped by the replaying client's own breaker."""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio.to_thread
import httpx
import pytest

from resilience import Backoff, CircuitBreaker, Retry, RetryBudget
from resilience.asgi import IdempotencyMiddleware
from resilience.deadletter import (
    DeadLetterParked,
    DeadLetterQueue,
    DeadLetterReplayed,
    DeadLetterSucceeded,
    Depth,
    ReplaySummary,
    SQLiteStore,
    replay,
    replay_async,
)
from resilience.http import ResilientTransport
from resilience.stores import MemoryStore
from resilience.testing import EventRecorder, FakeClock, serve_asgi
from tests.conftest import Colour

pytestmark = pytest.mark.server  # the ledger: uvicorn on 127.0.0.1

TOKEN = "Bearer replayer-token"


class Ledger:
    """A payments service on 127.0.0.1: charges once per key (``IdempotencyMiddleware``).

    ``down``: answer 503 before charging. ``hold`` (every request) or ``hold_at`` (the n-th,
    from 1): charge, set ``holding``, then wait for ``gate`` before answering (so the caller's
    response can be lost after the charge). ``charges`` counts charges per order; ``seen``
    keeps the headers of every request the handler ran; ``wait_finished()`` waits until the
    middleware has finished (and stored) every request that arrived.
    """

    def __init__(self) -> None:
        self.charges: Counter[str] = Counter()
        self.seen: list[dict[str, str]] = []
        self.down = False
        self.hold = False
        self.hold_at: int | None = None
        self.holding = threading.Event()
        self.gate = threading.Event()
        self.arrived = 0
        self.finished = 0
        self._done = threading.Condition()

    def wait_finished(self, timeout: float = 10.0) -> None:
        """Block until every request received has been answered and stored (bounded)."""
        with self._done:
            assert self._done.wait_for(lambda: self.finished == self.arrived, timeout)

    def app(self, store: Any, *, closing: Callable[[], Awaitable[object]] | None = None) -> Any:
        """The ASGI app; ``DELETE /close`` awaits ``closing()`` in the server's loop (to close
        a ``redis.asyncio`` client where it was used)."""

        async def charges(scope: Any, receive: Any, send: Any) -> None:
            body, more = b"", True
            while more:
                message = await receive()
                body += message.get("body", b"")
                more = message.get("more_body", False)
            self.seen.append({k.decode(): v.decode() for k, v in scope["headers"]})
            number = len(self.seen)
            if self.down:
                await _respond(send, 503, b'{"error": "down"}', [(b"retry-after", b"0")])
                return
            order = str(json.loads(body)["order"])
            self.charges[order] += 1
            if self.hold or number == self.hold_at:
                self.holding.set()
                await anyio.to_thread.run_sync(self.gate.wait, 10.0)
            await _respond(send, 201, json.dumps({"charged": order}).encode())

        guarded = IdempotencyMiddleware(
            charges, store=store, key_scope=lambda scope: "shop", name="payments"
        )

        async def app(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http" and scope["method"] == "DELETE" and closing is not None:
                await closing()
                await _respond(send, 204, b"")
                return
            with self._done:
                self.arrived += 1
            try:
                await guarded(scope, receive, send)
            finally:
                if scope["type"] == "http":
                    with self._done:
                        self.finished += 1
                        self._done.notify_all()

        return app

    def duplicates(self) -> int:
        return sum(count - 1 for count in self.charges.values())


async def _respond(send: Any, status: int, body: bytes, extra: list[Any] | None = None) -> None:
    headers = [(b"content-type", b"application/json"), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
def ledger() -> Iterator[tuple[Ledger, str]]:
    """The ledger served on 127.0.0.1 (idempotency records in memory), and its URL."""
    service = Ledger()
    with serve_asgi(service.app(MemoryStore())) as url:
        yield service, url
    service.gate.set()


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[DeadLetterQueue]:
    dead = DeadLetterQueue(SQLiteStore(tmp_path / "dead.sqlite3", name="payments"), max_replays=3)
    yield dead
    dead.close()


def park(queue: DeadLetterQueue, url: str, orders: range, *, body: Any = None) -> list[str]:
    """Park one keyed charge per order, as a transport would after a final 503."""
    ids = []
    for order in orders:
        request = httpx.Request(
            "POST",
            f"{url}/charges",
            json=body if body is not None else {"order": order},
            headers={"Idempotency-Key": f'"charge-{order}"', "Authorization": "Bearer original"},
        )
        entry_id = queue.park_response(request, httpx.Response(503, request=request))
        assert entry_id is not None
        ids.append(entry_id)
    return ids


def test_a_replay_charges_each_entry_once_with_its_key(
    ledger: tuple[Ledger, str], queue: DeadLetterQueue
) -> None:
    """Each entry is sent again with its key, body and the replaying client's credentials;
    a 201 removes it."""
    service, url = ledger
    park(queue, url, range(3))
    with httpx.Client(headers={"Authorization": TOKEN}) as client:
        summary = replay(client, queue)
    assert (summary.succeeded, summary.stopped, summary.depth) == (3, "empty", Depth(0, 0))
    assert service.charges == Counter({"0": 1, "1": 1, "2": 1})
    assert [h["idempotency-key"] for h in service.seen] == [f'"charge-{n}"' for n in range(3)]
    assert {h["authorization"] for h in service.seen} == {TOKEN}


def test_an_entry_the_server_already_finished_is_answered_from_its_record(
    ledger: tuple[Ledger, str], queue: DeadLetterQueue
) -> None:
    """The first send charged and answered (the caller never saw it): the replay gets the
    stored response (Idempotent-Replayed) and the ledger still holds one charge."""
    service, url = ledger
    (entry_id,) = park(queue, url, range(1))
    with httpx.Client() as client:
        first = client.post(
            f"{url}/charges", json={"order": 0}, headers={"Idempotency-Key": '"charge-0"'}
        )
        assert first.status_code == 201
        with EventRecorder() as recorder:
            summary = replay(client, queue)
    assert summary.succeeded == 1
    assert service.charges == Counter({"0": 1})
    assert recorder.of(DeadLetterReplayed) == [
        DeadLetterReplayed("payments", entry_id, "succeeded")
    ]
    assert recorder.of(DeadLetterSucceeded) == [DeadLetterSucceeded("payments", entry_id)]


def test_a_key_reused_with_another_payload_is_parked_with_the_reason(
    ledger: tuple[Ledger, str], queue: DeadLetterQueue
) -> None:
    """A 422 parks the entry at once, with why, and emits DeadLetterParked."""
    _, url = ledger
    with httpx.Client() as client:
        client.post(f"{url}/charges", json={"order": 9}, headers={"Idempotency-Key": '"charge-0"'})
        (entry_id,) = park(queue, url, range(1))
        with EventRecorder() as recorder:
            summary = replay(client, queue)
    assert (summary.parked, summary.depth) == (1, Depth(0, 1))
    entry = queue.get(entry_id)
    assert entry is not None and entry.state == "parked" and "422" in entry.last_error
    assert recorder.of(DeadLetterParked) == [DeadLetterParked("payments", entry_id)]


def test_failing_replays_park_an_entry_after_max_replays(
    ledger: tuple[Ledger, str], queue: DeadLetterQueue
) -> None:
    """While the service stays down each run counts a failed replay; the third parks it."""
    service, url = ledger
    service.down = True
    (entry_id,) = park(queue, url, range(1))
    with httpx.Client() as client:
        runs = [replay(client, queue) for _ in range(3)]
    assert [(r.failed, r.parked) for r in runs] == [(1, 0), (1, 0), (0, 1)]
    entry = queue.get(entry_id)
    assert entry is not None and (entry.state, entry.replays) == ("parked", 3)
    assert service.charges == Counter()


def test_an_open_breaker_on_the_replaying_client_stops_the_run(
    ledger: tuple[Ledger, str], queue: DeadLetterQueue
) -> None:
    """The replay goes through the client's breaker: once it opens, the run stops and the
    remaining entries stay untouched for a later run."""
    service, url = ledger
    service.down = True
    park(queue, url, range(5))
    transport = ResilientTransport(
        retry=None,
        breaker=CircuitBreaker("payments", failure_rate=1.0, minimum_calls=2, open_for=60.0),
        tracing=False,
    )
    with httpx.Client(transport=transport) as client:
        summary = replay(client, queue)
    assert (summary.failed, summary.stopped) == (2, "refused")
    assert len(service.seen) == 2
    assert sorted(e.replays for e in queue.entries()) == [0, 0, 0, 1, 1]


def test_failures_in_a_row_stop_a_run_without_a_breaker(
    ledger: tuple[Ledger, str], queue: DeadLetterQueue
) -> None:
    """A client with no breaker still does not storm: ``stop_after_failures`` ends the run."""
    service, url = ledger
    service.down = True
    park(queue, url, range(6))
    with httpx.Client() as client:
        summary = replay(client, queue, stop_after_failures=2)
    assert (summary.failed, summary.stopped) == (2, "failures")
    assert len(service.seen) == 2


def test_a_run_is_bounded_by_count_and_by_time(
    ledger: tuple[Ledger, str], queue: DeadLetterQueue
) -> None:
    """``limit`` entries, then stop; ``max_time`` on an injected clock (advanced one second
    per entry by the progress callback), then stop."""
    service, url = ledger
    park(queue, url, range(10))
    clock = FakeClock(start=50.0)
    reports: list[ReplaySummary] = []

    def progress(report: ReplaySummary) -> None:
        reports.append(report)
        clock.advance(1.0)

    with httpx.Client() as client:
        counted = replay(client, queue, limit=4)
        timed = replay(client, queue, max_time=2.5, clock=clock, progress=progress)
    assert (counted.succeeded, counted.stopped) == (4, "limit")
    assert (timed.succeeded, timed.stopped, timed.elapsed) == (3, "time", 3.0)
    assert [r.succeeded for r in reports] == [1, 2, 3]
    assert all(r.stopped is None for r in reports)
    assert queue.depth() == Depth(3, 0)
    assert sum(service.charges.values()) == 7


def test_replay_async_settles_like_replay(
    ledger: tuple[Ledger, str], queue: DeadLetterQueue, async_colour: Colour
) -> None:
    """The async shell replays through an AsyncClient with the same outcomes, under asyncio
    and under trio (the store's steps run in worker threads through anyio)."""
    service, url = ledger
    park(queue, url, range(4))

    async def main() -> ReplaySummary:
        async with httpx.AsyncClient(headers={"Authorization": TOKEN}) as client:
            return await replay_async(client, queue, limit=3)

    summary = async_colour.run(main)
    assert (summary.succeeded, summary.stopped, summary.depth) == (3, "limit", Depth(1, 0))
    assert sum(service.charges.values()) == 3


def test_http_entries_are_skipped_without_a_client(
    ledger: tuple[Ledger, str], queue: DeadLetterQueue
) -> None:
    """``replay(None, ...)`` (calls only) leaves HTTP entries ready."""
    _, url = ledger
    park(queue, url, range(2))
    summary = replay(None, queue)
    assert (summary.skipped, summary.depth) == (2, Depth(2, 0))


def test_replay_options_are_checked(queue: DeadLetterQueue) -> None:
    """Bad bounds fail before anything is claimed, naming the parameter."""
    with pytest.raises(ValueError, match="batch"):
        replay(None, queue, batch=0)
    with pytest.raises(ValueError, match="max_time"):
        replay(None, queue, max_time=-1.0)


def test_a_cancelled_replay_releases_what_it_did_not_send(
    ledger: tuple[Ledger, str], queue: DeadLetterQueue, async_colour: Colour
) -> None:
    """Cancelled while its second charge is in flight: the first entry is settled, the one in
    flight keeps its lease (its outcome is unknown), the claimed ones not yet sent go back at
    once for any other replayer."""
    service, url = ledger
    ids = park(queue, url, range(5))
    service.hold_at = 2

    async def main() -> None:
        async with httpx.AsyncClient() as client:
            if async_colour.name == "trio":
                import trio

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(replay_async, client, queue)
                    await anyio.to_thread.run_sync(service.holding.wait, 10.0)
                    nursery.cancel_scope.cancel()
            else:
                task = asyncio.create_task(replay_async(client, queue, batch=5))
                await anyio.to_thread.run_sync(service.holding.wait, 10.0)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task

    async_colour.run(main)
    service.gate.set()
    assert queue.get(ids[0]) is None  # finished before the cancellation
    others, _ = queue.store.claim("another-replayer", 10, None)
    assert [e.id for e in others] == ids[2:]  # released at once; ids[1] is still leased
    assert all(e.replays == 0 for e in others)


@pytest.mark.parametrize(("budget", "sent"), [(None, 12), (0.25, 5)])
def test_a_replay_spends_the_clients_retry_budget(
    ledger: tuple[Ledger, str], queue: DeadLetterQueue, budget: float | None, sent: int
) -> None:
    """Payments still down, 4 entries, a client retrying keyed charges 3 times: without a budget
    the replay sends 12 requests; with a budget of 25 % of first attempts (and no floor) the
    client allows 1 retry in all, and payments sees 5."""
    service, url = ledger
    service.down = True
    park(queue, url, range(4))
    retry = Retry(3, backoff=Backoff(initial=0.001, maximum=0.002))
    if budget is not None:
        retry = retry.replace(budget=RetryBudget(ratio=budget, min_retries_per_second=0.0))
    transport = ResilientTransport(  # a fake clock: the budget's window never slides here
        retry=retry, breaker=None, origins_honour_keys=True, clock=FakeClock(), tracing=False
    )
    with httpx.Client(transport=transport) as client:
        summary = replay(client, queue, stop_after_failures=None)
    assert summary.failed == 4
    assert len(service.seen) == sent
