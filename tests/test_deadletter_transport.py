"""The transports' ``dead_letter=`` option, on a real loopback server: what each transport
parks, what the caller still gets, and what it leaves alone."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from resilience import Backoff, CircuitBreaker, CircuitOpenError, DeadlineExceededError, Retry
from resilience.deadletter import ENTRY_EXTENSION, DeadLetterQueue, Depth, SQLiteStore, replay
from resilience.http import AsyncResilientTransport, ResilientTransport, resilient_client
from resilience.stores import MemoryStore
from resilience.testing import serve_asgi
from tests.http_server import Reply, Stall, dead_origin
from tests.test_deadletter_replay import Ledger

pytestmark = pytest.mark.server  # the ledger and the scripted server on 127.0.0.1

FAST = Backoff(initial=0.001, maximum=0.002)


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[DeadLetterQueue]:
    dead = DeadLetterQueue(SQLiteStore(tmp_path / "dead.sqlite3", name="payments"))
    yield dead
    dead.close()


@pytest.fixture
def ledger() -> Iterator[tuple[Ledger, str]]:
    service = Ledger()
    with serve_asgi(service.app(MemoryStore())) as url:
        yield service, url
    service.gate.set()


def test_a_post_answered_503_after_its_retries_is_parked_with_the_key_it_was_sent_with(
    ledger: tuple[Ledger, str], queue: DeadLetterQueue
) -> None:
    """The transport's own key (added to the POST, withdrawn from the caller's request after
    the call) is the one kept; the caller gets the 503 with the entry's id."""
    service, url = ledger
    service.down = True
    transport = ResilientTransport(
        retry=Retry(3, backoff=FAST), origins_honour_keys=True, dead_letter=queue, tracing=False
    )
    with httpx.Client(transport=transport) as client:
        response = client.post(f"{url}/charges", json={"order": 5})
    assert response.status_code == 503
    assert len(service.seen) == 3  # the retries ran first
    (entry,) = queue.entries()
    assert response.extensions[ENTRY_EXTENSION] == entry.id
    assert entry.letter.key == service.seen[0]["idempotency-key"]
    assert "idempotency-key" not in response.request.headers  # the caller's request, restored


def test_async_transport_parks_alike(ledger: tuple[Ledger, str], queue: DeadLetterQueue) -> None:
    """AsyncResilientTransport parks a final 503 and an open breaker's refusal."""
    service, url = ledger
    service.down = True

    async def main() -> tuple[httpx.Response, BaseException]:
        transport = AsyncResilientTransport(
            retry=None,
            breaker=CircuitBreaker("pay", minimum_calls=1, open_for=600.0),
            origins_honour_keys=True,
            dead_letter=queue,
            tracing=False,
        )
        async with httpx.AsyncClient(transport=transport) as client:
            first = await client.post(f"{url}/charges", json={"order": 1})
            with pytest.raises(CircuitOpenError) as refused:
                await client.post(f"{url}/charges", json={"order": 2})
        return first, refused.value

    first, refused = asyncio.run(main())
    assert first.status_code == 503 and ENTRY_EXTENSION in first.extensions
    assert any("parked in dead-letter queue 'payments'" in n for n in refused.__notes__)
    assert [e.why for e in queue.entries()] == ["exhausted", "breaker_open"]


def test_an_origin_that_ignores_keys_keeps_only_unsent_calls(
    http_server: Any, queue: DeadLetterQueue
) -> None:
    """Without origins_honour_keys a lost response is not parked (a replay could act twice);
    a refused connection is (the request never left)."""
    http_server.script("/charges", [Stall()])
    transport = ResilientTransport(
        retry=None, attempt_timeout=0.2, dead_letter=queue, tracing=False
    )
    with httpx.Client(transport=transport) as client:
        with pytest.raises(httpx.ReadTimeout):
            client.post(f"{http_server.url}/charges", json={})
        with pytest.raises(httpx.ConnectError):
            client.post(f"{dead_origin()}/charges", json={})
    assert [e.why for e in queue.entries()] == ["unreachable"]


def test_a_spent_deadline_is_parked_on_the_one_error_the_caller_gets(
    http_server: Any, queue: DeadLetterQueue
) -> None:
    """The deadline's error (not httpx's timeout under it) carries the note."""
    http_server.script("/charges", [Reply(503, headers={"Retry-After": "0"}), Stall()])
    transport = ResilientTransport(
        retry=Retry(2, backoff=FAST),
        deadline=0.3,
        origins_honour_keys=True,
        dead_letter=queue,
        tracing=False,
    )
    with httpx.Client(transport=transport) as client, pytest.raises(DeadlineExceededError) as spent:
        client.post(f"{http_server.url}/charges", json={})
    assert any("parked in dead-letter queue" in n for n in spent.value.__notes__)
    assert [e.why for e in queue.entries()] == ["deadline"]


def test_answers_and_keyless_calls_are_not_parked(http_server: Any, queue: DeadLetterQueue) -> None:
    """A 201, a 400, and a GET (no key) answered 503 leave the queue empty."""
    http_server.script("/a", [Reply(201), Reply(400), Reply(503)])
    with resilient_client(retry=None, dead_letter=queue, tracing=False) as client:
        assert client.post(f"{http_server.url}/a", json={}).status_code == 201
        assert client.post(f"{http_server.url}/a", json={}).status_code == 400
        assert client.get(f"{http_server.url}/a").status_code == 503
    assert queue.depth() == Depth(0, 0)


def test_a_replay_through_a_parking_client_is_not_parked_again(
    ledger: tuple[Ledger, str], queue: DeadLetterQueue
) -> None:
    """Replaying with a client that itself parks: a failed replay updates its entry, it does
    not add another."""
    service, url = ledger
    service.down = True
    client = resilient_client(
        retry=None, origins_honour_keys=True, dead_letter=queue, tracing=False
    )
    with client:
        client.post(f"{url}/charges", json={"order": 1})
        summary = replay(client, queue)
    assert summary.failed == 1
    (entry,) = queue.entries()
    assert entry.replays == 1


def test_dead_letter_must_be_a_queue() -> None:
    """Anything else is refused at construction, naming the option."""
    with pytest.raises(TypeError, match="dead_letter"):
        ResilientTransport(dead_letter="payments.sqlite3")  # type: ignore[typeddict-item]
