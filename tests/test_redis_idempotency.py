"""Idempotency records on a real redis-server: the store steps, both middleware shells sharing
one Redis across "replicas", leases on Redis time, and outages."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from typing import Any

import httpx
import pytest

from resilience import StoreUnavailable
from resilience.asgi import IdempotencyMiddleware as AsgiIdempotency
from resilience.stores import Claim, RedisStore
from resilience.stores._redis_idempotency import HEARTBEAT, RESTART_FENCE
from resilience.testing import EventRecorder, serve_asgi, serve_wsgi
from resilience.wsgi import IdempotencyMiddleware as WsgiIdempotency
from tests.redis_server import RedisServer, record_commands

KEY = '"0f8fad5b-d9cb-469f-a165-70867728950e"'


def test_claim_complete_replay_on_redis(redis_server: RedisServer) -> None:
    """The same protocol as the memory store, one round trip per step."""
    store = RedisStore(redis_server.client())
    first = store.idempotency_claim("k", "fp", lease=30.0)
    assert first.outcome == "claimed" and first.token
    assert store.idempotency_claim("k", "fp", 30.0) == Claim("in_progress")
    assert store.idempotency_claim("k", "other", 30.0) == Claim("mismatch")
    assert store.idempotency_complete("k", "fp", "not-the-owner", b"x", 60.0) == "lost"
    response = bytes(range(256))  # binary-safe
    assert store.idempotency_complete("k", "fp", first.token, response, 60.0) == "stored"
    assert store.idempotency_claim("k", "fp", 30.0) == Claim("replay", response=response)
    assert store.idempotency_claim("k", "other", 30.0) == Claim("mismatch")
    (name,) = redis_server.client().keys("resilience:*")  # type: ignore[attr-defined]
    assert name.endswith(b"}:idem") and 0 < redis_server.client().pttl(name) <= 60_000  # type: ignore[attr-defined]


def test_steps_send_bytes_encoded_once(redis_server: RedisServer) -> None:
    """What a step sends, exactly: the prefixed, hash-tagged key (the SHA-256 of the
    idempotency key), the op, the fingerprint, the lease or TTL in ms and the token, all as
    bytes (redis-py would type-check and encode every str again); the response as given."""
    client: Any = redis_server.client()
    sent = record_commands(client)
    store = RedisStore(client, prefix="svc:")
    store.idempotency_release("other", "t")  # the script is loaded
    sent.clear()
    first = store.idempotency_claim("k", "fp", lease=30.0)
    assert first.token is not None
    response = bytes(range(256))
    assert store.idempotency_complete("k", "fp", first.token, response, 60.5) == "stored"
    assert store.idempotency_claim("k", "fp", 30.0) == Claim("replay", response=response)
    store.idempotency_release("k", first.token)  # too late: nothing happens
    assert [args[0] for args in sent] == ["EVALSHA"] * 4
    assert all(type(arg) is bytes for args in sent for arg in args[1:])
    key = b"svc:{%s}:idem" % hashlib.sha256(b"k").hexdigest()[:32].encode()
    assert all(args[2:4] == (b"1", key) for args in sent)
    token, other = first.token.encode(), sent[2][7]
    assert [args[4:] for args in sent] == [
        (b"claim", b"fp", b"30000", token, b"3"),  # 3: the restart fence, in seconds
        (b"complete", b"fp", token, response, b"60500"),
        (b"claim", b"fp", b"30000", other, b"3"),
        (b"release", token),
    ]
    assert other != token  # a token per claim
    assert sent[1][7] is response  # stored as given, not copied
    assert sent[0][4] is sent[2][4]  # the ops are constants


def test_a_dead_owners_claim_expires_on_redis_time(redis_server: RedisServer) -> None:
    """A claim whose owner never completes frees the key after its lease (Redis TTL); the
    dead owner can no longer store a response."""
    store = RedisStore(redis_server.client())
    dead = store.idempotency_claim("k", "fp", lease=0.05)
    assert dead.token is not None
    deadline = time.monotonic() + 2.0
    while store.idempotency_claim("k", "fp", 0.05).outcome == "in_progress":
        assert time.monotonic() < deadline, "the lease never expired"
        time.sleep(0.01)  # polling Redis's clock, bounded
    assert store.idempotency_complete("k", "other", dead.token, b"late", 60.0) == "lost"


def test_release_frees_the_key(redis_server: RedisServer) -> None:
    store = RedisStore(redis_server.client())
    claim = store.idempotency_claim("k", "fp", 30.0)
    assert claim.token is not None
    store.idempotency_release("k", claim.token)
    assert store.idempotency_claim("k", "fp", 30.0).outcome == "claimed"


def _charging_wsgi(charges: list[bytes]) -> Any:
    def app(environ: Any, start_response: Any) -> list[bytes]:
        charges.append(environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"])))
        start_response("201 Created", [("Content-Type", "application/json")])
        return [b'{"charge": %d}' % len(charges)]

    return app


@pytest.mark.server
def test_two_wsgi_replicas_share_records(redis_server: RedisServer) -> None:
    """A retry that lands on another replica is answered from the first replica's record."""
    charges: list[bytes] = []
    replicas = [
        WsgiIdempotency(
            _charging_wsgi(charges), store=RedisStore(redis_server.client()), name="payments"
        )
        for _ in range(2)
    ]
    with serve_wsgi(replicas[0]) as one, serve_wsgi(replicas[1]) as two:
        headers = {"Idempotency-Key": KEY, "Authorization": "Bearer alice"}
        first = httpx.post(f"{one}/charges", json={"cents": 5}, headers=headers)
        retried = httpx.post(f"{two}/charges", json={"cents": 5}, headers=headers)
    assert first.status_code == retried.status_code == 201
    assert retried.content == first.content
    assert retried.headers["idempotent-replayed"] == "true"
    assert len(charges) == 1


@pytest.mark.server
def test_asgi_with_an_async_redis_client(redis_server: RedisServer) -> None:
    """The ASGI middleware runs its steps on a ``redis.asyncio`` client."""
    charges: list[bytes] = []
    client: Any = redis_server.async_client()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["method"] == "DELETE":  # the test's last request: close the client in its loop
            await client.aclose()
            body = b""
        else:
            message = await receive()
            charges.append(message.get("body", b""))
            body = b"%d" % len(charges)
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": body})

    with serve_asgi(AsgiIdempotency(app, store=RedisStore(client), name="payments")) as url:
        headers = {"Idempotency-Key": KEY, "Authorization": "Bearer alice"}
        first = httpx.post(url, content=b"a", headers=headers)
        again = httpx.post(url, content=b"a", headers=headers)
        other = httpx.post(url, content=b"b", headers=headers)
        httpx.delete(url)
    assert (first.status_code, again.status_code, other.status_code) == (201, 201, 422)
    assert again.content == first.content == b"1"
    assert len(charges) == 1


def test_middleware_refuses_a_store_of_the_wrong_colour(redis_server: RedisServer) -> None:
    """A sync Redis client would block the event loop; an async one cannot serve WSGI."""
    with pytest.raises(TypeError, match="store"):
        AsgiIdempotency(_charging_wsgi([]), store=RedisStore(redis_server.client()), name="x")
    client: Any = redis_server.async_client()
    with pytest.raises(TypeError, match="store"):
        WsgiIdempotency(_charging_wsgi([]), store=RedisStore(client), name="x")
    asyncio.run(client.aclose())


@pytest.mark.server
@pytest.mark.parametrize("fail_open", [False, True])
def test_redis_outage_refuses_unless_fail_open(redis_server: RedisServer, fail_open: bool) -> None:
    """Redis down: keyed requests get 503 (fail closed, whatever the store's on_error), or run
    unprotected with ``fail_open=True``; no RedisError reaches the client, one outage event."""
    charges: list[bytes] = []
    client = redis_server.client(socket_timeout=0.2, socket_connect_timeout=0.2)
    app = WsgiIdempotency(
        _charging_wsgi(charges),
        store=RedisStore(client, on_error="allow"),
        fail_open=fail_open,
        name="payments",
    )
    headers = {"Idempotency-Key": KEY, "Authorization": "Bearer alice"}
    with serve_wsgi(app) as url, EventRecorder() as recorder:
        redis_server.stop()
        try:
            answers = [httpx.post(url, json={"n": 1}, headers=headers) for _ in range(3)]
        finally:
            redis_server.start()
    if fail_open:
        assert [a.status_code for a in answers] == [201, 201, 201] and len(charges) == 3
    else:
        assert [a.status_code for a in answers] == [503, 503, 503] and charges == []
        assert answers[0].headers["retry-after"] == "1"
        assert answers[0].json()["type"].endswith("#temporary-reduced-capacity")
    assert len(recorder.of(StoreUnavailable)) == 1


def test_async_outage_is_reported_as_unavailable(redis_server: RedisServer) -> None:
    """The async path reports the outage as it is; the policy decides what it means."""

    async def scenario() -> Claim:
        client: Any = redis_server.async_client(socket_timeout=0.2, socket_connect_timeout=0.2)
        try:
            return await RedisStore(client).idempotency_claim_async("k", "fp", 30.0)
        finally:
            await client.aclose()

    redis_server.stop()
    try:
        claim = asyncio.run(scenario())
    finally:
        redis_server.start()
    assert claim == Claim("unavailable")


# -- #12 items 4 and 5: leases kept alive, and Redis outages fail closed ----------------------


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_renew_and_complete_are_fenced_by_the_token(redis_server: RedisServer, kind: str) -> None:
    """Renewal and completion act only for the token that holds the claim; a record that
    vanished (a restarted Redis) is taken back by its token; a finished one is not."""
    from resilience.stores import MemoryStore

    store: Any = MemoryStore() if kind == "memory" else RedisStore(redis_server.client())

    def vanish() -> None:
        if kind == "memory":
            store._records.clear()
        else:
            redis_server.client().flushall()  # type: ignore[attr-defined]

    claim = store.idempotency_claim("k", "fp", 30.0)
    token = claim.token
    assert store.idempotency_renew("k", "fp", token, 30.0) == "renewed"
    assert store.idempotency_renew("k", "fp", "someone-else", 30.0) == "lost"
    assert store.idempotency_complete("k", "fp", "someone-else", b"x", 60.0) == "lost"
    vanish()
    assert store.idempotency_renew("k", "fp", token, 30.0) == "renewed"  # taken back
    assert store.idempotency_claim("k", "fp", 30.0) == Claim("in_progress")
    assert store.idempotency_complete("k", "fp", token, b"done", 60.0) == "stored"
    assert store.idempotency_renew("k", "fp", token, 30.0) == "lost"  # finished
    assert store.idempotency_claim("k", "fp", 30.0) == Claim("replay", response=b"done")
    vanish()
    assert store.idempotency_complete("k", "fp", token, b"again", 60.0) == "stored"
    assert store.idempotency_claim("k", "fp", 30.0) == Claim("replay", response=b"again")


def test_a_restarted_redis_claims_no_absent_record_until_its_fence_ends(
    redis_server: RedisServer,
) -> None:
    """#12 item 5a: a Redis that just restarted (empty) answers claims of absent records
    "fenced", with the seconds left, on its own uptime; the running request's heartbeat takes
    its record back meanwhile, and from then on the key is answered as always (409, then the
    replay), fence or not."""
    store = RedisStore(redis_server.client())
    running = store.idempotency_claim("k", "fp", 60.0)
    assert running.token is not None
    redis_server.stop()
    redis_server.start()
    fenced = store.idempotency_claim("k", "fp", 60.0)
    assert fenced.outcome == "fenced" and fenced.token is None
    assert fenced.retry_after is not None and 0 < fenced.retry_after <= RESTART_FENCE
    assert store.idempotency_claim("new", "fp", 60.0).outcome == "fenced"  # any absent key
    assert store.idempotency_renew("k", "fp", running.token, 60.0) == "renewed"  # taken back
    assert store.idempotency_claim("k", "fp", 60.0) == Claim("in_progress")
    assert store.idempotency_claim("k", "other", 60.0) == Claim("mismatch")
    assert store.idempotency_complete("k", "fp", running.token, b"done", 60.0) == "stored"
    assert store.idempotency_claim("k", "fp", 60.0) == Claim("replay", response=b"done")
    redis_server.settle()  # the server is RESTART_FENCE seconds old: new keys are claimed
    assert store.idempotency_claim("new", "fp", 60.0).outcome == "claimed"


def test_the_async_path_is_fenced_too(redis_server: RedisServer) -> None:
    """``redis.asyncio`` clients run the same script: fenced after a restart."""

    async def scenario() -> Claim:
        client: Any = redis_server.async_client()
        try:
            return await RedisStore(client).idempotency_claim_async("k", "fp", 60.0)
        finally:
            await client.aclose()

    redis_server.stop()
    redis_server.start()
    assert asyncio.run(scenario()).outcome == "fenced"


@pytest.mark.parametrize("fail_open", [False, True])
def test_a_fenced_claim_is_refused_with_the_fences_retry_after(fail_open: bool) -> None:
    """The policy answers a fenced claim as an outage (503, the reduced-capacity type) with
    the seconds the fence has left as Retry-After (rounded up), or runs it unprotected with
    ``fail_open=True``; the heartbeat on Redis beats every second whatever the lease."""
    from resilience._idempotency.policy import PASS, Idempotency
    from resilience.stores import MemoryStore

    rules = Idempotency(store=MemoryStore(), fail_open=fail_open)
    verdict = rules.judge(Claim("fenced", retry_after=2.2))
    if fail_open:
        assert verdict is PASS
    else:
        assert verdict.response is not None and verdict.response.status == 503
        assert (b"retry-after", b"3") in [(k.lower(), v) for k, v in verdict.response.headers]
        assert verdict.decision == "store_fenced"
    assert rules.beat == 20.0  # lease / 3: a memory store cannot restart without its process
    assert HEARTBEAT < RESTART_FENCE


def test_the_heartbeat_on_redis_beats_within_the_fence(redis_server: RedisServer) -> None:
    """On a store that can restart empty, renewals come every min(lease / 3, HEARTBEAT) s."""
    from resilience._idempotency.policy import Idempotency

    client: Any = redis_server.client()
    assert Idempotency(store=RedisStore(client), name="payments").beat == HEARTBEAT == 1.0
    assert Idempotency(store=RedisStore(client), lease=1.5, name="payments").beat == 0.5
    assert Idempotency(store=RedisStore(client), name="payments").next_beat("renewed") == HEARTBEAT


def _redis_serve(kind: str, redis_server: RedisServer, **options: Any) -> Any:
    from tests.test_idempotency_servers import _serve

    return _serve(kind, redis=redis_server, **options)


@pytest.mark.server
@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
def test_a_handler_that_outlives_its_lease_is_not_run_twice(
    redis_server: RedisServer, kind: str
) -> None:
    """The lease (1 s) is renewed while the handler runs (2.5 s and more): retries meanwhile
    get 409, never a second run; then the stored response is replayed."""
    from tests.test_idempotency_servers import charge, held_charge, stats

    with _redis_serve(kind, redis_server, lease=1.0) as url:
        first, results = held_charge(url, "hold")
        began, answers = time.monotonic(), []
        while time.monotonic() - began < 2.5:  # bounded: 2.5 leases of retries
            answers.append(charge(url).status_code)
            threading.Event().wait(0.1)
        httpx.get(f"{url}/release")
        first.join(20)
        replay = charge(url)
        runs = stats(url)["runs"]
    assert set(answers) == {409}
    assert results[0].status_code == 201
    assert replay.headers["idempotent-replayed"] == "true" and runs == 1


def _records(redis_server: RedisServer) -> list[bytes]:
    client: Any = redis_server.client()
    try:
        return list(client.keys("resilience:*:idem"))
    finally:
        client.close()


@pytest.mark.server
@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
def test_redis_restarting_mid_handler_does_not_run_it_twice(
    redis_server: RedisServer, kind: str
) -> None:
    """#12 item 5a, with the default lease (60 s): Redis restarts empty while the handler runs
    and a retry is sent the moment Redis answers again, before any heartbeat could have taken
    the claim back: it is refused (409, or 503 while the restarted Redis is fenced), with
    Retry-After, never run; the first request completes and is then replayed."""
    from tests.test_idempotency_servers import charge, held_charge, stats

    with _redis_serve(kind, redis_server) as url:
        first, results = held_charge(url, "hold-first")
        redis_server.stop()
        redis_server.start()  # returns as soon as the new, empty Redis answers PING
        duplicate = charge(url)
        httpx.get(f"{url}/release")
        first.join(20)
        replay = charge(url)
        runs = stats(url)["runs"]
    assert duplicate.status_code in (409, 503), duplicate.text
    assert int(duplicate.headers["retry-after"]) >= 1
    assert results[0].status_code == 201
    assert replay.headers["idempotent-replayed"] == "true" and runs == 1


@pytest.mark.server
@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
def test_concurrent_retries_while_redis_is_down_all_get_503(
    redis_server: RedisServer, kind: str
) -> None:
    """Five concurrent retries of one key while Redis is down: none runs; each gets 503 with
    Retry-After and the reduced-capacity problem type."""
    from tests.test_idempotency_servers import charge, stats

    with _redis_serve(kind, redis_server) as url:
        redis_server.stop()
        answers: list[httpx.Response] = []
        try:
            threads = [
                threading.Thread(target=lambda: answers.append(charge(url))) for _ in range(5)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(20)
        finally:
            redis_server.start()
        runs = stats(url)["runs"]
    assert [a.status_code for a in answers] == [503] * 5 and runs == 0
    assert all(a.headers["retry-after"] == "1" for a in answers)
    assert answers[0].json()["type"].endswith("#temporary-reduced-capacity")


@pytest.mark.server
@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
def test_a_completion_that_meets_an_outage_is_stored_once_redis_is_back(
    redis_server: RedisServer, kind: str
) -> None:
    """The handler finishes while Redis is down: the client gets its answer, retries get 503
    meanwhile, and the response is stored in the background once Redis answers again."""
    from tests.test_idempotency_servers import charge, held_charge, stats, wait_until

    with _redis_serve(kind, redis_server, lease=5.0) as url:
        first, results = held_charge(url, "hold-first")
        redis_server.stop()
        try:
            httpx.get(f"{url}/release")
            first.join(20)
            meanwhile = charge(url)
        finally:
            redis_server.start()
        wait_until(lambda: len(_records(redis_server)) == 1, "the response to be stored")
        replay = charge(url)
        runs = stats(url)["runs"]
    assert results[0].status_code == 201 and meanwhile.status_code == 503
    assert replay.headers["idempotent-replayed"] == "true" and replay.content == results[0].content
    assert runs == 1
