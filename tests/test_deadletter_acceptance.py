"""The dead-letter queue's acceptance, end to end on real servers (loopback HTTP, a real
redis-server, a real replaying subprocess killed with SIGKILL): an outage's keyed charges are
all parked and, after recovery, each is charged exactly once; a replayer killed mid-run loses
and doubles nothing; a charge whose response was lost is answered from the idempotency record;
no credential reaches either store's data."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest

from resilience import Backoff, CircuitBreaker, IdempotentReplayed, Retry
from resilience.deadletter import (
    ENTRY_EXTENSION,
    DeadLetterQueue,
    Depth,
    RedisStreamStore,
    SQLiteStore,
    replay,
)
from resilience.http import ResilientTransport
from resilience.stores import MemoryStore, RedisStore
from resilience.testing import EventRecorder, serve_asgi
from tests.redis_server import RedisServer
from tests.test_deadletter_replay import Ledger

pytestmark = [pytest.mark.usefixtures("close_redis_clients"), pytest.mark.server]

ROOT = Path(__file__).resolve().parent.parent
FAST = Backoff(initial=0.001, maximum=0.002)
SECRETS = ("tok-authorization-91c2", "tok-cookie-5d1e", "tok-proxy-a0f3", "tok-apikey-77b8",
           "tok-password-e4c9")  # fmt: skip


# Makes a queue over the test's store named "payments" (``lease=`` for the store).
QueueMaker = Callable[..., DeadLetterQueue]
Backing = tuple[QueueMaker, list[str]]  # the maker, and the CLI's arguments naming the store


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def backing(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backing]:
    """Queues over one dead-letter store of each kind, and the CLI's arguments for it."""
    made: list[DeadLetterQueue] = []
    if request.param == "sqlite":
        path = tmp_path / "dead.sqlite3"

        def make(lease: float = 60.0) -> DeadLetterQueue:
            made.append(DeadLetterQueue(SQLiteStore(path, name="payments", lease=lease)))
            return made[-1]

        where = ["--db", str(path)]
    else:
        server: RedisServer = request.getfixturevalue("redis_server")

        def make(lease: float = 60.0) -> DeadLetterQueue:
            store = RedisStreamStore(server.client(), name="payments", lease=lease)
            made.append(DeadLetterQueue(store))
            return made[-1]

        where = ["--redis", server.url]
    yield make, [*where, "--name", "payments"]
    for queue in made:
        queue.close()


def charge(client: httpx.Client, url: str, order: int) -> httpx.Response | Exception:
    """One keyed charge; its response, or the exception it ended with."""
    try:
        return client.post(
            f"{url}/charges", json={"order": order}, headers={"Idempotency-Key": f"order-{order}"}
        )
    except Exception as exc:
        return exc


def resilient(queue: DeadLetterQueue, **options: Any) -> httpx.Client:
    """A client whose transport parks in ``queue``; the ledger (ours) honours keys."""
    transport = ResilientTransport(
        retry=options.pop("retry", Retry(2, backoff=FAST)),
        breaker=options.pop("breaker", CircuitBreaker("payments", minimum_calls=4, open_for=600.0)),
        origins_honour_keys=True,
        dead_letter=queue,
        tracing=False,
        **options,
    )
    return httpx.Client(transport=transport)


def test_an_outage_is_parked_whole_and_charged_once_after_recovery(
    backing: Backing, redis_server: RedisServer
) -> None:
    """200 keyed POSTs while payments (behind IdempotencyMiddleware on Redis) answers 503:
    every call is parked (503s after retries, then the open breaker) and the caller still gets
    its response or error, naming the entry; after recovery one replay charges each order
    exactly once and empties the queue."""
    make, _ = backing
    queue = make()
    service = Ledger()
    records: Any = redis_server.async_client()
    with serve_asgi(service.app(RedisStore(records), closing=records.aclose)) as url:
        service.down = True
        with resilient(queue) as client:
            outcomes = [charge(client, url, n) for n in range(200)]
        assert queue.depth() == Depth(200, 0)
        named = [
            o.extensions.get(ENTRY_EXTENSION)
            if isinstance(o, httpx.Response)
            else next(n for n in o.__notes__ if "parked in dead-letter queue" in n)
            for o in outcomes
        ]
        assert all(named)
        assert {type(o).__name__ for o in outcomes} == {"Response", "CircuitOpenError"}
        service.down = False
        with resilient(queue) as client:
            summary = replay(client, queue)
        httpx.delete(f"{url}/close")
    assert (summary.succeeded, summary.failed, summary.parked) == (200, 0, 0)
    assert summary.depth == Depth(0, 0)
    assert service.charges == Counter({str(n): 1 for n in range(200)})


def test_a_replayer_killed_mid_run_loses_and_doubles_nothing(
    backing: Backing,
) -> None:
    """The CLI replaying 20 entries (a real process) is SIGKILLed while its 8th charge is in
    flight (made, not yet answered); a second replayer takes over the dead one's leases and
    finishes: every order charged exactly once, the queue empty."""
    make, where = backing
    queue = make()
    service = Ledger()
    with serve_asgi(service.app(MemoryStore())) as url:
        for order in range(20):
            request = httpx.Request(
                "POST", f"{url}/charges", json={"order": order},
                headers={"Idempotency-Key": f"order-{order}"},
            )  # fmt: skip
            queue.park_response(request, httpx.Response(503))
        service.hold_at = 8
        replayer = subprocess.Popen(
            [sys.executable, "-m", "resilience.deadletter", *where, "replay", "--quiet"],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert service.holding.wait(60.0), "the replayer never reached the 8th entry"
        finally:
            replayer.send_signal(signal.SIGKILL)
            assert replayer.wait(10.0) == -signal.SIGKILL
        service.gate.set()
        service.wait_finished()  # the charge in flight completes and is recorded
        assert sum(service.charges.values()) == 8
        heir = make(lease=0.0)  # the first replayer is dead: take its leases at once
        with httpx.Client() as client:
            summary = replay(client, heir)
    assert summary.depth == Depth(0, 0)
    assert summary.succeeded == 20 - 7
    assert service.charges == Counter({str(n): 1 for n in range(20)})


def test_a_charge_whose_response_was_lost_is_answered_from_the_record(
    backing: Backing,
) -> None:
    """The first attempt charges, then its response is lost (the caller's read times out):
    the call is parked as "unknown"; the replay gets the stored response
    (Idempotent-Replayed: true) and the ledger holds one charge."""
    make, _ = backing
    queue = make()
    service = Ledger()
    service.hold = True
    with serve_asgi(service.app(MemoryStore())) as url:
        with resilient(queue, retry=None, attempt_timeout=0.3) as client:
            outcome = charge(client, url, 1)
        assert isinstance(outcome, httpx.ReadTimeout)
        (entry,) = queue.entries()
        assert entry.why == "unknown"
        service.gate.set()
        service.wait_finished()
        with EventRecorder() as recorder, httpx.Client() as client:
            summary = replay(client, queue)
    assert summary.succeeded == 1 and summary.depth == Depth(0, 0)
    assert len(recorder.of(IdempotentReplayed)) == 1
    assert service.charges == Counter({"1": 1})


def secret_request(url: str, order: int) -> httpx.Request:
    return httpx.Request(
        "POST",
        url.replace("http://", f"http://payer:{SECRETS[4]}@") + "/charges",
        json={"order": order},
        headers={
            "Idempotency-Key": f"order-{order}",
            "Authorization": f"Bearer {SECRETS[0]}",
            "Cookie": f"session={SECRETS[1]}",
            "Proxy-Authorization": f"Basic {SECRETS[2]}",
            "X-Api-Key": SECRETS[3],
        },
    )


def test_no_credential_reaches_the_sqlite_file(tmp_path: Path) -> None:
    """Every byte of the SQLite file (and its write-ahead log) is free of the request's
    Authorization, Cookie, Proxy-Authorization, user-named header and URL password."""
    path = tmp_path / "dead.sqlite3"
    queue = DeadLetterQueue(SQLiteStore(path), secret_headers=["X-Api-Key"])
    for order in range(5):
        assert queue.park_error(secret_request("http://127.0.0.1:9", order), httpx.ReadTimeout("t"))
    queue.close()
    files = [p for p in tmp_path.iterdir() if p.name.startswith("dead.sqlite3")]
    data = b"".join(p.read_bytes() for p in files)
    assert b"order-4" in data  # the entries are there
    for secret in SECRETS:
        assert secret.encode() not in data, secret
    with closing(sqlite3.connect(path)) as db, db:  # and nothing hides them in another encoding
        dumped = "\n".join(db.iterdump())
    assert all(secret not in dumped for secret in SECRETS)


def test_no_credential_reaches_the_redis_stream(redis_server: RedisServer) -> None:
    """Every key the Redis store writes (stream, hashes, sets), read back and DUMPed, is free
    of the request's credentials."""
    client: Any = redis_server.client()
    queue = DeadLetterQueue(RedisStreamStore(client), secret_headers=["X-Api-Key"])
    for order in range(5):
        assert queue.park_error(secret_request("http://127.0.0.1:9", order), httpx.ReadTimeout("t"))
    seen: list[bytes] = []
    for key in client.scan_iter():
        seen.append(client.dump(key))
        kind = client.type(key)
        if kind == b"stream":
            seen += [json.dumps(str(item)).encode() for item in client.xrange(key)]
        elif kind == b"hash":
            seen += [k + v for k, v in client.hgetall(key).items()]
        elif kind == b"set":
            seen += list(client.smembers(key))
    data = b"\n".join(seen)
    assert b"order-4" in data
    for secret in SECRETS:
        assert secret.encode() not in data, secret


def test_the_subprocess_sees_the_environment_it_needs() -> None:
    """The replaying subprocess imports the package from this checkout."""
    done = subprocess.run(
        [sys.executable, "-c", "import resilience.deadletter, sys; print(sys.prefix)"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
        env=os.environ.copy(),
    )  # fmt: skip
    assert done.stdout.strip() == sys.prefix
