"""Idempotency records on a real redis-server: the store steps, both middleware shells sharing
one Redis across "replicas", leases on Redis time, and outages."""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

import httpx
import pytest

from resilience import StoreUnavailable
from resilience._idempotency import Claim
from resilience.asgi import IdempotencyMiddleware as AsgiIdempotency
from resilience.stores import RedisStore
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
    assert not store.idempotency_complete("k", "not-the-owner", b"x", 60.0)
    response = bytes(range(256))  # binary-safe
    assert store.idempotency_complete("k", first.token, response, 60.0)
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
    assert store.idempotency_complete("k", first.token, response, 60.5)
    assert store.idempotency_claim("k", "fp", 30.0) == Claim("replay", response=response)
    store.idempotency_release("k", first.token)  # too late: nothing happens
    assert [args[0] for args in sent] == ["EVALSHA"] * 4
    assert all(type(arg) is bytes for args in sent for arg in args[1:])
    key = b"svc:{%s}:idem" % hashlib.sha256(b"k").hexdigest()[:32].encode()
    assert all(args[2:4] == (b"1", key) for args in sent)
    token, other = first.token.encode(), sent[2][7]
    assert [args[4:] for args in sent] == [
        (b"claim", b"fp", b"30000", token),
        (b"complete", token, response, b"60500"),
        (b"claim", b"fp", b"30000", other),
        (b"release", token),
    ]
    assert other != token  # a token per claim
    assert sent[1][6] is response  # stored as given, not copied
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
    assert not store.idempotency_complete("k", dead.token, b"late", 60.0)


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


def test_two_wsgi_replicas_share_records(redis_server: RedisServer) -> None:
    """A retry that lands on another replica is answered from the first replica's record."""
    charges: list[bytes] = []
    replicas = [
        WsgiIdempotency(_charging_wsgi(charges), store=RedisStore(redis_server.client()))
        for _ in range(2)
    ]
    with serve_wsgi(replicas[0]) as one, serve_wsgi(replicas[1]) as two:
        headers = {"Idempotency-Key": KEY}
        first = httpx.post(f"{one}/charges", json={"cents": 5}, headers=headers)
        retried = httpx.post(f"{two}/charges", json={"cents": 5}, headers=headers)
    assert first.status_code == retried.status_code == 201
    assert retried.content == first.content
    assert retried.headers["idempotent-replayed"] == "true"
    assert len(charges) == 1


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

    with serve_asgi(AsgiIdempotency(app, store=RedisStore(client))) as url:
        headers = {"Idempotency-Key": KEY}
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
        AsgiIdempotency(_charging_wsgi([]), store=RedisStore(redis_server.client()))
    client: Any = redis_server.async_client()
    with pytest.raises(TypeError, match="store"):
        WsgiIdempotency(_charging_wsgi([]), store=RedisStore(client))
    asyncio.run(client.aclose())


@pytest.mark.parametrize("on_error", ["allow", "deny"])
def test_redis_outage_follows_on_error(redis_server: RedisServer, on_error: str) -> None:
    """Redis down: "allow" runs keyed requests unprotected, "deny" answers 503; either way no
    RedisError reaches the client and one outage event is emitted."""
    charges: list[bytes] = []
    client = redis_server.client(socket_timeout=0.2, socket_connect_timeout=0.2)
    app = WsgiIdempotency(_charging_wsgi(charges), store=RedisStore(client, on_error=on_error))  # type: ignore[arg-type]
    with serve_wsgi(app) as url, EventRecorder() as recorder:
        redis_server.stop()
        try:
            answers = [
                httpx.post(url, json={"n": 1}, headers={"Idempotency-Key": KEY}).status_code
                for _ in range(3)
            ]
        finally:
            redis_server.start()
    if on_error == "allow":
        assert answers == [201, 201, 201] and len(charges) == 3
    else:
        assert answers == [503, 503, 503] and charges == []
    assert len(recorder.of(StoreUnavailable)) == 1


def test_async_outage_allows(redis_server: RedisServer) -> None:
    """The async path follows on_error as well."""

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
    assert claim == Claim("claimed")  # no token: nothing will be stored
