"""The scripted test server itself: each action does what the transport tests rely on, with
``httpx.Client`` and ``httpx.AsyncClient`` alike."""

# The fixtures are imported below so this file also runs without conftest; tests then take
# them as parameters, which ruff sees as redefinitions.
# ruff: noqa: F811

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.http_server import (
    Drop,
    Echo,
    Reply,
    ScriptedServer,
    Stall,
    dead_origin,
    http_server,  # noqa: F401
    http_server_session,  # noqa: F401
)

Outcome = httpx.Response | httpx.HTTPError
NO_TLS = False  # plain http on loopback: skip building a TLS context (~0.2 s per client)


def call(method: str, url: str, **options: Any) -> tuple[str, str, dict[str, Any]]:
    """One request for ``Driver.run``; ``chunks=[...]`` sends a streamed (chunked) body."""
    return method, url, options


@dataclass(frozen=True)
class Driver:
    """Sends requests over one ``httpx.Client`` or one ``httpx.AsyncClient``."""

    colour: str

    def run(self, *calls: tuple[str, str, dict[str, Any]], timeout: float = 5.0) -> list[Outcome]:
        """Send ``calls`` in order over one client; each outcome is a response or the error."""
        if self.colour == "sync":
            return self._run_sync(calls, timeout)
        return asyncio.run(self._run_async(calls, timeout))

    def _run_sync(self, calls: Any, timeout: float) -> list[Outcome]:
        outcomes: list[Outcome] = []
        with httpx.Client(timeout=timeout, verify=NO_TLS) as client:
            for method, url, options in calls:
                options = dict(options)
                if "chunks" in options:
                    options["content"] = iter(options.pop("chunks"))
                try:
                    outcomes.append(client.request(method, url, **options))
                except httpx.HTTPError as exc:
                    outcomes.append(exc)
        return outcomes

    async def _run_async(self, calls: Any, timeout: float) -> list[Outcome]:
        outcomes: list[Outcome] = []
        async with httpx.AsyncClient(timeout=timeout, verify=NO_TLS) as client:
            for method, url, options in calls:
                options = dict(options)
                if "chunks" in options:
                    options["content"] = _agen(options.pop("chunks"))
                try:
                    outcomes.append(await client.request(method, url, **options))
                except httpx.HTTPError as exc:
                    outcomes.append(exc)
        return outcomes


async def _agen(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


@pytest.fixture(params=["sync", "async"])
def driver(request: pytest.FixtureRequest) -> Driver:
    return Driver(request.param)


def response(outcome: Outcome) -> httpx.Response:
    assert isinstance(outcome, httpx.Response), f"expected a response, got {outcome!r}"
    return outcome


def test_replies_play_in_order_and_the_last_repeats(
    driver: Driver, http_server: ScriptedServer
) -> None:
    """The nth request to a path gets the nth scripted reply, headers included; the last repeats."""
    url = f"{http_server.url}/p"
    http_server.script("/p", [Reply(503, {"Retry-After": "2"}, b"busy"), Reply(201, body=b"made")])
    first, second, third = map(response, driver.run(*[call("GET", url)] * 3))
    assert (first.status_code, first.headers["retry-after"], first.content) == (503, "2", b"busy")
    assert [(r.status_code, r.content) for r in (second, third)] == [(201, b"made")] * 2


def test_unscripted_paths_answer_ok(driver: Driver, http_server: ScriptedServer) -> None:
    """Any path without a script answers 200 ok."""
    [outcome] = driver.run(call("POST", f"{http_server.url}/anything?q=1", content=b"x"))
    assert (response(outcome).status_code, response(outcome).content) == (200, b"ok")


def test_reply_headers_can_repeat_and_close_the_connection(
    driver: Driver, http_server: ScriptedServer
) -> None:
    """Header pairs are sent as given (repeats too); ``Connection: close`` closes afterwards."""
    http_server.script("/h", [Reply(200, [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")])])
    http_server.script("/bye", [Reply(200, {"Connection": "close"})])
    outcomes = driver.run(
        call("GET", f"{http_server.url}/h"),
        call("GET", f"{http_server.url}/bye"),
        call("GET", f"{http_server.url}/after"),
    )
    assert response(outcomes[0]).headers.get_list("set-cookie") == ["a=1", "b=2"]
    assert [response(o).status_code for o in outcomes] == [200, 200, 200]
    connections = [r.connection for r in http_server.received()]
    assert connections[0] == connections[1] != connections[2]


def test_receipts_record_every_request_in_order(http_server: ScriptedServer) -> None:
    """Receipts keep method, target, case-insensitive and raw headers, body and arrival time."""
    with httpx.Client(base_url=http_server.url, verify=NO_TLS) as client:
        for body in (b"one", b"two", b"three"):
            client.post("/pay?try=1", content=body, headers={"Idempotency-Key": b"k-\xe9"})
        client.get("/other")
    payments = http_server.received("/pay")
    assert [(r.method, r.path, r.body) for r in payments] == [
        ("POST", "/pay?try=1", b"one"),
        ("POST", "/pay?try=1", b"two"),
        ("POST", "/pay?try=1", b"three"),
    ]
    keys = [r.headers["IDEMPOTENCY-KEY"] for r in payments]
    assert keys == ["k-\xe9"] * 3 and "idempotency-key" in payments[0].headers
    assert ("Idempotency-Key", "k-\xe9") in payments[0].raw_headers
    assert payments[0].headers.get("Content-Length") == "3"
    assert [r.path for r in http_server.received()] == ["/pay?try=1"] * 3 + ["/other"]
    times = [r.at for r in http_server.received()]
    assert times == sorted(times) and times[-1] <= time.monotonic()


def test_keep_alive_reuses_one_connection(driver: Driver, http_server: ScriptedServer) -> None:
    """One client's requests share a connection; another client opens its own."""
    driver.run(*[call("GET", f"{http_server.url}/k")] * 3)
    driver.run(call("GET", f"{http_server.url}/k"))
    connections = [r.connection for r in http_server.received("/k")]
    assert connections[0] == connections[1] == connections[2] != connections[3]


def test_a_clients_connection_close_is_honoured(
    driver: Driver, http_server: ScriptedServer
) -> None:
    """A request saying ``Connection: close`` is answered, then its connection is closed."""
    outcomes = driver.run(
        call("GET", f"{http_server.url}/c", headers={"Connection": "close"}),
        call("GET", f"{http_server.url}/c"),
    )
    assert response(outcomes[0]).headers["connection"] == "close"
    assert response(outcomes[1]).status_code == 200
    first, second = http_server.received("/c")
    assert first.connection != second.connection


def test_head_and_204_answers_carry_no_body(driver: Driver, http_server: ScriptedServer) -> None:
    """HEAD and 204 answers send no body bytes, so the kept-alive connection stays usable."""
    http_server.script("/empty", [Reply(204, body=b"ignored")])
    outcomes = driver.run(
        call("HEAD", f"{http_server.url}/x"),
        call("GET", f"{http_server.url}/empty"),
        call("GET", f"{http_server.url}/x"),
    )
    head, empty, after = map(response, outcomes)
    assert (head.status_code, head.headers["content-length"], head.content) == (200, "2", b"")
    assert (empty.status_code, empty.content) == (204, b"")
    assert (after.status_code, after.content) == (200, b"ok")
    assert len({r.connection for r in http_server.received()}) == 1


def test_stall_times_out_on_the_client(driver: Driver, http_server: ScriptedServer) -> None:
    """A stalled request is received but never answered: the client's read timeout fires."""
    http_server.script("/s", [Stall()])
    [outcome] = driver.run(call("GET", f"{http_server.url}/s"), timeout=0.2)
    assert isinstance(outcome, httpx.ReadTimeout)
    assert len(http_server.received("/s")) == 1


def test_a_stall_blocks_no_other_connection_and_reset_releases_it(
    http_server: ScriptedServer,
) -> None:
    """While one request stalls, others are answered; reset closes the stalled connection."""
    http_server.script("/s", [Stall()])

    async def scenario() -> None:
        async with (
            httpx.AsyncClient(timeout=10.0, verify=NO_TLS) as stalled,
            httpx.AsyncClient(verify=NO_TLS) as other,
        ):
            task = asyncio.create_task(stalled.get(f"{http_server.url}/s"))
            answers = [await other.get(f"{http_server.url}/x") for _ in range(3)]
            assert [a.status_code for a in answers] == [200] * 3
            await asyncio.to_thread(http_server.wait_received, 1, "/s")
            assert not task.done()
            await asyncio.to_thread(http_server.reset)
            with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
                await asyncio.wait_for(task, 5)

    asyncio.run(scenario())


def test_reset_releases_a_stalled_sync_client(http_server: ScriptedServer) -> None:
    """A sync client stuck on a stall gets an error as soon as the server is reset."""
    http_server.script("/s", [Stall()])
    errors: list[BaseException] = []

    def stuck() -> None:
        try:
            httpx.get(f"{http_server.url}/s", timeout=10.0, verify=NO_TLS)
        except httpx.HTTPError as exc:
            errors.append(exc)

    thread = threading.Thread(target=stuck, daemon=True)
    thread.start()
    http_server.wait_received(1, "/s")
    http_server.reset()
    thread.join(5)
    assert not thread.is_alive()
    assert [type(e) for e in errors] in ([httpx.RemoteProtocolError], [httpx.ReadError])
    assert http_server.received() == []


def test_drop_closes_without_a_response(driver: Driver, http_server: ScriptedServer) -> None:
    """A dropped request surfaces as a protocol or read error; the next request works."""
    http_server.script("/d", [Drop(), Reply(200, body=b"back")])
    dropped, after = driver.run(
        call("POST", f"{http_server.url}/d", content=b"x"),
        call("POST", f"{http_server.url}/d", content=b"y"),
    )
    assert isinstance(dropped, (httpx.RemoteProtocolError, httpx.ReadError))
    assert response(after).content == b"back"
    assert [r.body for r in http_server.received("/d")] == [b"x", b"y"]


def test_delay_holds_the_answer_back(driver: Driver, http_server: ScriptedServer) -> None:
    """A delayed reply arrives no sooner than its delay, so a shorter read timeout fires first."""
    http_server.script("/late", [Reply(200, body=b"late", delay=0.3)])
    http_server.script("/soon", [Reply(200, body=b"soon", delay=0.05)])
    [timed_out] = driver.run(call("GET", f"{http_server.url}/late"), timeout=0.05)
    assert isinstance(timed_out, httpx.ReadTimeout)
    started = time.monotonic()
    [answer] = driver.run(call("GET", f"{http_server.url}/soon"))
    assert time.monotonic() - started >= 0.05
    assert response(answer).content == b"soon"


def test_echo_returns_the_body_and_headers(driver: Driver, http_server: ScriptedServer) -> None:
    """Echo returns the body (sized or chunked) and the request headers as JSON."""
    http_server.script("/e", [Echo()])
    sized, chunked = driver.run(
        call("PUT", f"{http_server.url}/e", content=b"hello", headers={"X-Test": "a"}),
        call("POST", f"{http_server.url}/e", chunks=[b"ab", b"", b"cd"]),
    )
    assert response(sized).content == b"hello"
    assert json.loads(response(sized).headers["x-echo-headers"])["x-test"] == "a"
    assert response(chunked).content == b"abcd"
    assert http_server.received("/e")[1].headers["transfer-encoding"] == "chunked"


def test_dead_origin_refuses_connections(driver: Driver) -> None:
    """Nothing listens on a dead origin: connecting fails with ConnectError."""
    [outcome] = driver.run(call("GET", f"{dead_origin()}/x"))
    assert isinstance(outcome, httpx.ConnectError)


def test_concurrent_clients_are_all_recorded_and_scripts_stay_exact(
    http_server: ScriptedServer,
) -> None:
    """Requests from many threads are all recorded and each scripted action is played once."""
    http_server.script("/c", [Reply(500), Reply(200)])
    barrier = threading.Barrier(4, timeout=5)
    statuses: list[int] = []

    def worker() -> None:
        with httpx.Client(base_url=http_server.url, verify=NO_TLS) as client:
            barrier.wait()
            statuses.extend(client.get("/c").status_code for _ in range(10))

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(statuses) == [200] * 39 + [500]
    assert len(http_server.received("/c")) == 40


def test_pipelined_requests_are_answered_in_order(http_server: ScriptedServer) -> None:
    """Two requests sent at once on one connection are answered in order, delays included."""
    http_server.script("/first", [Reply(200, body=b"first", delay=0.05)])
    http_server.script("/second", [Reply(200, body=b"second")])
    requests = b"GET /first HTTP/1.1\r\nHost: x\r\n\r\nGET /second HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", http_server.port), 5) as sock:
        sock.sendall(requests)
        data = b""
        while not data.endswith(b"second"):
            chunk = sock.recv(4096)
            assert chunk, f"connection closed early: {data!r}"
            data += chunk
    assert data.index(b"first") < data.index(b"second")
    assert data.count(b"HTTP/1.1 200 OK") == 2


def test_malformed_requests_get_400(http_server: ScriptedServer) -> None:
    """A request line that is not HTTP/1.x is answered 400 and the connection closed."""
    with socket.create_connection(("127.0.0.1", http_server.port), 5) as sock:
        sock.sendall(b"NONSENSE\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert http_server.received() == []


def test_reset_forgets_scripts_and_receipts(http_server: ScriptedServer) -> None:
    """After reset, scripted paths answer 200 ok again and no receipts remain."""
    http_server.script("/r", [Reply(500)])
    assert httpx.get(f"{http_server.url}/r", verify=NO_TLS).status_code == 500
    http_server.reset()
    assert http_server.received() == []
    assert httpx.get(f"{http_server.url}/r", verify=NO_TLS).status_code == 200


def test_wait_received_times_out_instead_of_hanging(http_server: ScriptedServer) -> None:
    """Waiting for a request that never comes raises TimeoutError after the timeout."""
    with pytest.raises(TimeoutError, match="0 of 1 requests to /never"):
        http_server.wait_received(1, "/never", timeout=0.05)


@pytest.mark.parametrize(
    ("build", "error", "name"),
    [
        (lambda: Reply(delay=-1.0), ValueError, "delay"),
        (lambda: Reply(status=700), ValueError, "status"),
        (lambda: Reply(body="text"), TypeError, "body"),
    ],
)
def test_bad_actions_fail_at_construction(build: Any, error: type, name: str) -> None:
    """Invalid actions fail when built, naming the field."""
    with pytest.raises(error, match=name):
        build()


def test_bad_scripts_are_rejected(http_server: ScriptedServer) -> None:
    """A script needs at least one action, and only actions."""
    with pytest.raises(ValueError, match="actions"):
        http_server.script("/x", [])
    with pytest.raises(TypeError, match="actions"):
        http_server.script("/x", [200])
