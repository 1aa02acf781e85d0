"""The scripted test server itself: each action does what the transport tests rely on."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.http_server import Drop, Echo, Reply, ScriptedServer, Stall, dead_origin


def test_reply_and_receipts(http_server: ScriptedServer) -> None:
    """Scripted replies come in order (the last repeats); receipts record every request."""
    http_server.script("/p", [Reply(503, {"Retry-After": "2"}, b"busy"), Reply(201, body=b"ok")])
    with httpx.Client(base_url=http_server.url) as client:
        first = client.post("/p", content=b"one", headers={"X-Test": "a"})
        second = client.get("/p?x=1")
        third = client.get("/p")
    assert (first.status_code, first.headers["retry-after"], first.content) == (503, "2", b"busy")
    assert [second.status_code, third.status_code] == [201, 201]
    received = http_server.received("/p")
    assert [(r.method, r.body) for r in received] == [("POST", b"one"), ("GET", b""), ("GET", b"")]
    assert received[0].headers["x-test"] == "a"


def test_unscripted_paths_answer_ok(http_server: ScriptedServer) -> None:
    """Any path without a script answers 200 ok."""
    response = httpx.get(f"{http_server.url}/anything")
    assert (response.status_code, response.content) == (200, b"ok")


def test_stall_causes_a_read_timeout(http_server: ScriptedServer) -> None:
    """A stalled request times out on the client's read timeout."""
    http_server.script("/s", [Stall()])
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{http_server.url}/s", timeout=0.2)


def test_drop_closes_without_a_response(http_server: ScriptedServer) -> None:
    """A dropped request surfaces as a protocol or read error on the client."""
    http_server.script("/d", [Drop()])
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        httpx.get(f"{http_server.url}/d")


def test_echo_and_chunked_bodies(http_server: ScriptedServer) -> None:
    """Echo returns the body, including a chunked (streamed) one."""
    http_server.script("/e", [Echo()])
    response = httpx.post(f"{http_server.url}/e", content=iter([b"ab", b"cd"]))
    assert response.content == b"abcd"
    assert http_server.received("/e")[0].headers["transfer-encoding"] == "chunked"


def test_async_client_and_dead_origin(http_server: ScriptedServer) -> None:
    """The async client works against the server; a dead origin refuses connections."""

    async def scenario() -> int:
        async with httpx.AsyncClient() as client:
            with pytest.raises(httpx.ConnectError):
                await client.get(f"{dead_origin()}/x")
            return (await client.get(f"{http_server.url}/x")).status_code

    assert asyncio.run(scenario()) == 200
