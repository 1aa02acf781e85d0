"""The transports change nothing of httpx they do not mean to: the context-manager protocol
reaches the inner transport, bodies that cannot be replayed are never resent, and every
transport httpx builds for a client (its options, mounts, proxies) runs the policies."""

from __future__ import annotations

import asyncio
import io
import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from resilience import Backoff, CircuitBreaker, Hedge, Retry
from resilience.http import (
    AsyncResilientTransport,
    ResilientTransport,
    resilient_async_client,
    resilient_client,
)
from tests.http_server import Driver, Relay, Reply

FAST = Retry(3, backoff=Backoff(initial=0.001, maximum=0.005))


class Recording(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """An inner transport that records the context-manager calls it gets."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __enter__(self) -> Recording:
        self.calls.append("enter")
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.calls.append("exit")

    async def __aenter__(self) -> Recording:
        self.calls.append("aenter")
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.calls.append("aexit")

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200)


def test_the_context_manager_protocol_reaches_the_inner_transport() -> None:
    """``with httpx.Client(transport=ours)`` enters and exits the transport ours wraps, sync
    and async, as it would enter a bare one."""
    inner = Recording()
    with httpx.Client(transport=ResilientTransport(inner)) as client:
        client.get("http://api.test/")
    assert inner.calls == ["enter", "exit"]

    inner = Recording()

    async def scenario() -> None:
        async with httpx.AsyncClient(transport=AsyncResilientTransport(inner)) as client:
            await client.get("http://api.test/")

    asyncio.run(scenario())
    assert inner.calls == ["aenter", "aexit"]


def test_a_multipart_file_that_cannot_seek_is_not_resent(driver: Driver, http_server: Any) -> None:
    """A PUT whose multipart file cannot seek back (a pipe, a socket, a decompressor),
    answered 503: the 503 is returned, not resent with an empty file part; a seekable file is
    resent whole."""
    http_server.script("/upload", [Reply(503), Reply(201)])
    with Unseekable(b"receipt-bytes") as pipe:
        response = driver.send(
            driver.transport(retry=FAST), "PUT", f"{http_server.url}/upload", files={"f": pipe}
        )
    assert response.status_code == 503
    received = http_server.received("/upload")
    assert len(received) == 1 and b"receipt-bytes" in received[0].body

    http_server.script("/seekable", [Reply(503), Reply(201)])
    with open(__file__, "rb") as seekable:
        response = driver.send(
            driver.transport(retry=FAST),
            "PUT",
            f"{http_server.url}/seekable",
            files={"f": seekable},
        )
    assert response.status_code == 201
    bodies = [r.body for r in http_server.received("/seekable")]
    assert len(bodies) == 2 and b"resent whole" in bodies[1]


def send_in(
    runner: str, transport_options: dict[str, Any], method: str, url: str, **kwargs: Any
) -> httpx.Response:
    """One request through a fresh transport: sync, or async under asyncio or trio."""
    if runner == "sync":
        with httpx.Client(transport=ResilientTransport(**transport_options)) as client:
            return client.request(method, url, **kwargs)

    async def go() -> httpx.Response:
        transport = AsyncResilientTransport(**transport_options)
        async with httpx.AsyncClient(transport=transport) as client:
            return await client.request(method, url, **kwargs)

    return asyncio.run(go()) if runner == "asyncio" else trio.run(go)


RUNNERS = ["sync", "asyncio", "trio"]
# A hedge sent long before the first copy's answer (held back by the server) comes.
HEDGED = {"retry": None, "hedge": Hedge(0.002), "deadline": 10.0}


@pytest.mark.parametrize("runner", RUNNERS)
def test_a_multipart_file_that_cannot_seek_is_not_hedged(runner: str, http_server: Any) -> None:
    """A hedged PUT whose multipart file cannot seek back is sent once: a second copy would
    carry an empty file part, and its answer could be the one the caller gets."""
    http_server.script("/upload", [Reply(201, body=b"first", delay=0.3), Reply(202)])
    with Unseekable(b"receipt-bytes") as pipe:
        response = send_in(runner, HEDGED, "PUT", f"{http_server.url}/upload", files={"f": pipe})
    assert (response.status_code, response.content) == (201, b"first")
    received = http_server.received("/upload")
    assert len(received) == 1 and b"receipt-bytes" in received[0].body


@pytest.mark.parametrize("runner", RUNNERS)
def test_a_multipart_file_is_not_read_by_two_copies_at_once(
    runner: str, http_server: Any, tmp_path: Path
) -> None:
    """A hedged PUT of a large seekable file is sent once and whole: two copies reading the
    same file object at once would each send part of it (httpx then raises
    ``LocalProtocolError``: too little data for the declared Content-Length)."""
    data = bytes(range(256)) * (8 * 4096)  # 8 MiB
    path = tmp_path / "upload.bin"
    path.write_bytes(data)
    http_server.script("/upload", [Reply(201, body=b"first", delay=0.3), Reply(202)])
    with path.open("rb") as file:
        response = send_in(runner, HEDGED, "PUT", f"{http_server.url}/upload", files={"f": file})
    assert (response.status_code, response.content) == (201, b"first")
    received = http_server.received("/upload")
    assert len(received) == 1 and data in received[0].body


@pytest.mark.parametrize("runner", RUNNERS)
def test_a_body_given_as_bytes_is_still_hedged(runner: str, http_server: Any) -> None:
    """A PUT whose body is bytes can be sent whole by every copy at once: it is hedged, and
    each copy carries the whole body."""
    http_server.script("/put", [Reply(201, body=b"slow", delay=2.0), Reply(202, body=b"fast")])
    response = send_in(runner, HEDGED, "PUT", f"{http_server.url}/put", content=b"whole-body")
    assert (response.status_code, response.content) == (202, b"fast")
    assert [r.body for r in http_server.received("/put")] == [b"whole-body"] * 2


class Unseekable(io.RawIOBase):
    """A file that reads once and cannot seek back, like a pipe or a decompressor."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        size = min(len(buffer), len(self._data))
        buffer[:size], self._data = self._data[:size], self._data[size:]
        return size


def _pool(transport: Any) -> Any:
    return transport._inner._pool


@pytest.mark.parametrize("build", [resilient_client, resilient_async_client])
def test_client_options_reach_the_transports_httpx_builds(build: Any) -> None:
    """``limits``, ``verify``, ``http1``/``http2`` are httpx's own: they shape the
    connection pool of the transport ours wraps, exactly as for a bare client."""
    context = ssl.create_default_context()
    client = build(
        limits=httpx.Limits(max_connections=7, max_keepalive_connections=3),
        verify=context,
        http2=True,
        attempt_timeout=2.0,
    )
    pool = _pool(client._transport)
    assert pool._max_connections == 7 and pool._max_keepalive_connections == 3
    assert pool._ssl_context is context
    assert pool._http2 is True
    assert client._transport.options.attempt_timeout == 2.0


@pytest.mark.parametrize("via", ["argument", "environment"])
def test_requests_through_a_proxy_pass_the_policies(
    driver: Driver, http_server: Any, monkeypatch: pytest.MonkeyPatch, via: str
) -> None:
    """With ``proxy=`` (or ``HTTP_PROXY`` in the environment) httpx sends through a proxy
    transport of its own; ours wraps it too: the GET answered 503 is retried through the
    proxy, and the breaker of the origin counts it."""
    http_server.script("/r", [Reply(503), Reply(200, body=b"via proxy")])
    with Relay() as proxy:
        options: dict[str, Any] = {"retry": FAST, "breaker": CircuitBreaker()}
        if via == "argument":
            options["proxy"] = proxy.url
        else:
            for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
                monkeypatch.delenv(name, raising=False)
            monkeypatch.setenv("HTTP_PROXY", proxy.url)
            monkeypatch.setenv("NO_PROXY", "")
        if driver.colour == "sync":
            with resilient_client(**options) as client:
                response = client.get(f"{http_server.url}/r")
                mounted = next(t for t in client._mounts.values() if t is not None)
        else:

            async def scenario() -> tuple[httpx.Response, Any]:
                async with resilient_async_client(**options) as client:
                    found = next(t for t in client._mounts.values() if t is not None)
                    return await client.get(f"{http_server.url}/r"), found

            response, mounted = asyncio.run(scenario())
        assert (response.status_code, response.content) == (200, b"via proxy")
        assert [target for _, target in proxy.forwarded] == ["/r", "/r"]
    assert isinstance(mounted, (ResilientTransport, AsyncResilientTransport))
    assert mounted.breaker_for(http_server.url).metrics.total_failures == 1


def test_a_resilient_transport_given_to_a_factory_is_refused() -> None:
    """Handing the factory a transport that is already resilient would run the policies twice
    per attempt: it says so."""
    with pytest.raises(TypeError, match="already a resilient transport"):
        resilient_client(transport=ResilientTransport())


@pytest.mark.parametrize(
    ("build", "ours"),
    [(resilient_client, ResilientTransport), (resilient_async_client, AsyncResilientTransport)],
)
def test_a_resilient_transport_mounted_on_a_factory_is_refused(build: Any, ours: Any) -> None:
    """A mount value that is already resilient would be wrapped in ours again (the policies
    twice per attempt): the factory refuses it, naming ``mounts``; other mounts are wrapped."""
    with pytest.raises(TypeError, match=r"mounts\['http://'\] is already a resilient"):
        build(mounts={"http://": ours()})
    inner = httpx.HTTPTransport() if ours is ResilientTransport else httpx.AsyncHTTPTransport()
    client = build(mounts={"http://": inner})
    (mounted,) = client._mounts.values()
    assert isinstance(mounted, ours) and mounted._inner is inner


def test_the_trace_header_of_each_attempt_leaves_the_request(
    driver: Driver, http_server: Any
) -> None:
    """Each attempt sends its own ``traceparent``; after the call the caller's request carries
    none (a redirect or an auth leg would otherwise reuse an ended span's id)."""
    from opentelemetry.sdk.trace import TracerProvider

    http_server.script("/r", [Reply(503), Reply(200)])
    transport = driver.transport(retry=FAST, tracer_provider=TracerProvider())
    response = driver.send(transport, "GET", f"{http_server.url}/r")
    parents = [r.headers.get("traceparent") for r in http_server.received("/r")]
    assert len(parents) == 2 and all(parents) and parents[0] != parents[1]
    assert "traceparent" not in response.request.headers
