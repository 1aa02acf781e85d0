"""Unsafe methods, safe by default: a POST is resent only when the server provably did not act,
unless its origin is declared to honour Idempotency-Key (real servers on 127.0.0.1)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from resilience import Backoff, Retry
from resilience.asgi import IdempotencyMiddleware
from resilience.stores import MemoryStore
from resilience.testing import serve_asgi
from tests.http_server import Driver, Drop, Relay, Reply, dead_origin, read_body
from tests.test_http_transport import keys_seen

FAST = Retry(4, backoff=Backoff(initial=0.001, maximum=0.005))


class Orders:
    """An ASGI handler that creates an order per request it runs, and counts its runs."""

    def __init__(self) -> None:
        self.runs = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await read_body(receive)
        self.runs += 1  # one event loop: no lock needed
        body = json.dumps({"order": self.runs}).encode()
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": body})


@pytest.mark.server
def test_a_post_the_server_acted_on_is_not_resent_by_default(driver: Driver) -> None:
    """Default client, a server that ignores keys: the handler runs, the connection drops
    before the answer; the POST (keyed, but to an origin not declared key-honouring) is not
    resent — one execution, and the caller sees the error."""
    orders = Orders()
    with serve_asgi(orders) as app_url, Relay(app_url, drop=lambda n: n == 0) as relay:
        transport = driver.transport(retry=FAST)
        with pytest.raises(httpx.RemoteProtocolError):
            driver.send(transport, "POST", f"{relay.url}/orders", json={"cents": 5})
        assert len(relay.forwarded) == 1
    assert orders.runs == 1


@pytest.mark.server
def test_a_keyed_post_to_a_key_honouring_origin_is_resent_and_replayed(driver: Driver) -> None:
    """With the origin declared key-honouring and our IdempotencyMiddleware in front: the
    first answer is lost, the resend with the same key gets the stored 201 — one execution."""
    orders = Orders()
    app = IdempotencyMiddleware(orders, store=MemoryStore(), shared_keys=True)  # one caller
    with serve_asgi(app) as app_url, Relay(app_url, drop=lambda n: n == 0) as relay:
        transport = driver.transport(retry=FAST, origins_honour_keys=[relay.url])
        response = driver.send(transport, "POST", f"{relay.url}/orders", json={"cents": 5})
        assert len(relay.forwarded) == 2
    assert response.status_code == 201
    assert response.headers["idempotent-replayed"] == "true"
    assert response.json() == {"order": 1}
    assert orders.runs == 1


def test_a_post_is_resent_after_a_refused_connection_or_a_429(
    driver: Driver, http_server: Any
) -> None:
    """Failures that prove the server did not act are retried for a POST by default: a
    refused connection (never sent) and a 429 (refused for its rate)."""
    http_server.script("/orders", [Reply(429, headers={"Retry-After": "0"}), Reply(201)])
    response = driver.send(
        driver.transport(retry=FAST), "POST", f"{http_server.url}/orders", content=b"{}"
    )
    assert response.status_code == 201
    assert len(http_server.received("/orders")) == 2

    with pytest.raises(httpx.ConnectError) as refused:
        driver.send(driver.transport(retry=FAST), "POST", f"{dead_origin()}/orders")
    assert "attempt 4 of 4" in "".join(refused.value.__notes__)


@pytest.mark.parametrize("status", [500, 502, 503, 504, 409])
def test_a_keyed_post_gets_its_answer_unless_the_origin_honours_keys(
    driver: Driver, http_server: Any, status: int
) -> None:
    """A keyed POST answered 5xx or 409 is returned as is by default; declared key-honouring
    (one origin, by its name) it is resent with the same key."""
    http_server.script("/orders", [Reply(status), Reply(201)])
    plain = driver.transport(retry=FAST)
    assert driver.send(plain, "POST", f"{http_server.url}/orders").status_code == status
    assert len(http_server.received("/orders")) == 1

    http_server.script("/orders", [Reply(status), Reply(201)])
    honouring = driver.transport(retry=FAST, origins_honour_keys={http_server.url})
    assert driver.send(honouring, "POST", f"{http_server.url}/orders").status_code == 201
    keys = keys_seen(http_server, "/orders")[1:]
    assert len(keys) == 2 and keys[0] == keys[1] and keys[0] is not None


def test_key_honouring_is_declared_per_origin(driver: Driver, http_server: Any) -> None:
    """Declaring another origin key-honouring does not make this one so: the POST that lost
    its answer is not resent."""
    http_server.script("/orders", [Drop(), Reply(201)])
    transport = driver.transport(retry=FAST, origins_honour_keys=["https://payments.example"])
    with pytest.raises(httpx.RemoteProtocolError):
        driver.send(transport, "POST", f"{http_server.url}/orders", content=b"{}")
    assert len(http_server.received("/orders")) == 1
