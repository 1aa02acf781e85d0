"""httpx's own behaviours through our transports, against a real server on 127.0.0.1: auth
flows, redirects, cookies, streaming, event hooks and request bodies work as with bare httpx,
sync and async (asyncio and trio), and nothing the transport adds stays on the caller's request.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import trio

from resilience.asgi import IdempotencyMiddleware
from resilience.http import AsyncResilientTransport, ResilientTransport
from resilience.stores import MemoryStore
from resilience.testing import serve_asgi
from tests.http_server import read_body

USER, PASSWORD, REALM, NONCE = "shop", "s3cret", "orders", "dcd98b7102dd2f0e8b11d0f600bfb0c0"
ADDED = ("idempotency-key", "request-timeout-ms", "traceparent")


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def _digest_ok(header: str, method: str) -> bool:
    """Check an RFC 7616 (MD5, qop=auth) Authorization header against USER and PASSWORD."""
    if not header.startswith("Digest "):
        return False
    fields = {}
    for part in header[7:].split(","):
        name, _, value = part.strip().partition("=")
        fields[name] = value.strip('"')
    ha1 = _md5(f"{USER}:{REALM}:{PASSWORD}")
    ha2 = _md5(f"{method}:{fields.get('uri', '')}")
    expected = _md5(
        f"{ha1}:{fields.get('nonce')}:{fields.get('nc')}:{fields.get('cnonce')}:auth:{ha2}"
    )
    return fields.get("username") == USER and fields.get("response") == expected


class Shop:
    """An ASGI app with one route per httpx behaviour under test; counts what it created."""

    def __init__(self) -> None:
        self.created = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        method, path = scope["method"], scope["path"]

        async def answer(status: int, payload: Any = None, extra: Any = ()) -> None:
            data = b"" if payload is None else json.dumps(payload).encode()
            out = [(b"content-type", b"application/json"), *extra]
            await send({"type": "http.response.start", "status": status, "headers": out})
            await send({"type": "http.response.body", "body": data})

        echo = {"method": method, "path": path, "body": body.decode("latin-1"), "headers": headers}
        if path == "/basic":
            import base64

            good = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            if headers.get("authorization") != good:
                return await answer(401, None, [(b"www-authenticate", b'Basic realm="orders"')])
            self.created += 1
            return await answer(201, echo)
        if path == "/digest":
            if not _digest_ok(headers.get("authorization", ""), method):
                challenge = f'Digest realm="{REALM}", nonce="{NONCE}", qop="auth", algorithm=MD5'
                return await answer(401, None, [(b"www-authenticate", challenge.encode())])
            self.created += 1
            return await answer(201, echo)
        if path.startswith("/redirect/"):
            return await answer(int(path.rsplit("/", 1)[1]), None, [(b"location", b"/landing")])
        if path == "/orders":  # a trailing-slash rule
            return await answer(307, None, [(b"location", b"/orders/")])
        if path in ("/orders/", "/landing"):
            if method == "POST":
                self.created += 1
            return await answer(201 if method == "POST" else 200, echo)
        if path == "/cookies/set":
            return await answer(200, None, [(b"set-cookie", b"session=abc123; Path=/")])
        if path == "/stream":
            start = {"type": "http.response.start", "status": 200, "headers": []}
            await send(start)
            for number in range(5):
                chunk = f"chunk-{number};".encode()
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            return await send({"type": "http.response.body", "body": b""})
        return await answer(200, echo)


@pytest.fixture(scope="module")
def shop() -> Iterator[tuple[str, Shop]]:
    """The shop behind our IdempotencyMiddleware (one caller: keys are not scoped)."""
    app = Shop()
    with serve_asgi(IdempotencyMiddleware(app, store=MemoryStore(), shared_keys=True)) as url:
        yield url, app


pytestmark = pytest.mark.server  # every test here talks to the shop on 127.0.0.1

FLAVOURS = ["bare", "sync", "asyncio", "trio"]


def session(
    flavour: str, url: str, calls: list[dict[str, Any]], **client_options: Any
) -> list[httpx.Response]:
    """Requests made one after another by one client, as a user makes them: a bare
    ``httpx.Client``, or a client whose transport is ours (sync; async under asyncio or trio).
    Each call is ``request()``'s arguments; ``stream=True`` reads the body chunk by chunk
    (joined with ``|``)."""

    def prepared(call: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        options = dict(call)
        return options, options.pop("stream", False)

    if flavour in ("bare", "sync"):
        transport = ResilientTransport(tracing=False) if flavour == "sync" else None
        responses = []
        with httpx.Client(base_url=url, transport=transport, **client_options) as client:
            for call in calls:
                options, stream = prepared(call)
                if stream:
                    with client.stream(**options) as response:
                        response._content = b"|".join(response.iter_bytes())
                else:
                    response = client.request(**options)
                responses.append(response)
        return responses

    async def scenario() -> list[httpx.Response]:
        transport = AsyncResilientTransport(tracing=False)
        responses = []
        async with httpx.AsyncClient(base_url=url, transport=transport, **client_options) as client:
            for call in calls:
                options, stream = prepared(call)
                if stream:
                    async with client.stream(**options) as response:
                        response._content = b"|".join([c async for c in response.aiter_bytes()])
                else:
                    response = await client.request(**options)
                responses.append(response)
        return responses

    if flavour == "trio":
        return trio.run(scenario)
    return asyncio.run(scenario())


def send(flavour: str, url: str, method: str, path: str, **options: Any) -> httpx.Response:
    """One request (``session`` with one call)."""
    return session(flavour, url, [{"method": method, "url": path, **options}])[0]


def nothing_added(response: httpx.Response) -> None:
    """The request the caller gets back (and every request of its history) carries none of
    the headers the transport adds."""
    for request in [*(r.request for r in response.history), response.request]:
        assert not any(name in request.headers for name in ADDED), request.headers


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_digest_auth_post_against_our_middleware(flavour: str, shop: tuple[str, Shop]) -> None:
    """A Digest-auth POST (httpx sends the same request again with the answer to the
    challenge) gets 201 through our transport, as with bare httpx: the second leg carries its
    own key, not the one the 401 was stored under."""
    url, app = shop
    before = app.created
    response = send(
        flavour, url, "POST", "/digest", json={"cents": 5}, auth=httpx.DigestAuth(USER, PASSWORD)
    )
    assert response.status_code == 201, response.text
    assert [r.status_code for r in response.history] == [401]
    assert app.created == before + 1
    nothing_added(response)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_redirected_post_against_our_middleware(flavour: str, shop: tuple[str, Shop]) -> None:
    """A POST redirected by a trailing-slash rule (307: same method and body) gets 201, as
    with bare httpx: the redirected request carries a key of its own."""
    url, app = shop
    before = app.created
    response = send(flavour, url, "POST", "/orders", json={"sku": "book"}, follow_redirects=True)
    assert response.status_code == 201, response.text
    assert app.created == before + 1
    assert response.json()["body"] == '{"sku":"book"}'
    nothing_added(response)


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize(
    ("code", "method", "landed"),
    [
        (301, "GET", "GET"),
        (302, "GET", "GET"),
        (303, "GET", "GET"),
        (307, "GET", "GET"),
        (308, "GET", "GET"),
        (301, "POST", "GET"),
        (302, "POST", "GET"),
        (303, "POST", "GET"),
        (307, "POST", "POST"),
        (308, "POST", "POST"),
    ],
)
def test_redirects(
    flavour: str, shop: tuple[str, Shop], code: int, method: str, landed: str
) -> None:
    """httpx follows every redirect status as it does bare: 301/302/303 turn a POST into a GET,
    307/308 keep it and its body."""
    url, _ = shop
    body = {"content": b"payload"} if method == "POST" else {}
    response = send(flavour, url, method, f"/redirect/{code}", follow_redirects=True, **body)
    assert response.json()["method"] == landed
    assert response.json()["body"] == ("payload" if landed == "POST" else "")
    assert [r.status_code for r in response.history] == [code]
    nothing_added(response)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_basic_and_custom_generator_auth(flavour: str, shop: tuple[str, Shop]) -> None:
    """Basic auth, and a custom generator auth flow that answers a challenge, work as bare."""
    url, _ = shop
    response = send(flavour, url, "POST", "/basic", content=b"x", auth=(USER, PASSWORD))
    assert response.status_code == 201

    class Challenged(httpx.Auth):
        def auth_flow(self, request: httpx.Request) -> Any:
            response = yield request  # first without credentials
            if response.status_code == 401:
                request.headers["Authorization"] = httpx.BasicAuth(USER, PASSWORD)._auth_header
                yield request

    response = send(flavour, url, "POST", "/basic", content=b"x", auth=Challenged())
    assert response.status_code == 201 and [r.status_code for r in response.history] == [401]
    nothing_added(response)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_cookies_and_event_hooks(flavour: str, shop: tuple[str, Shop]) -> None:
    """A cookie set by one response is sent on the next request; event hooks see each
    request and response (the hooks of an async client are coroutines)."""
    url, _ = shop
    seen: list[str] = []

    if flavour in ("bare", "sync"):

        def on_request(request: httpx.Request) -> None:
            seen.append(f"request {request.url.path}")

        def on_response(response: httpx.Response) -> None:
            seen.append(f"response {response.status_code}")

    else:

        async def on_request(request: httpx.Request) -> None:  # type: ignore[misc]
            seen.append(f"request {request.url.path}")

        async def on_response(response: httpx.Response) -> None:  # type: ignore[misc]
            seen.append(f"response {response.status_code}")

    hooks = {"request": [on_request], "response": [on_response]}
    calls = [{"method": "GET", "url": "/cookies/set"}, {"method": "GET", "url": "/echo"}]
    first, echoed = session(flavour, url, calls, event_hooks=hooks)
    assert first.cookies["session"] == "abc123"
    assert echoed.json()["headers"]["cookie"] == "session=abc123"
    assert seen == ["request /cookies/set", "response 200", "request /echo", "response 200"]


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_streaming_responses(flavour: str, shop: tuple[str, Shop]) -> None:
    """A streamed response arrives chunk by chunk, as bare httpx reads it."""
    url, _ = shop
    response = send(flavour, url, "GET", "/stream", stream=True)
    assert response.content.replace(b"|", b"") == b"".join(f"chunk-{n};".encode() for n in range(5))


def _files(tmp_path: Any) -> Any:
    path = tmp_path / "receipt.txt"
    path.write_bytes(b"file-bytes")
    return path


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("kind", ["bytes", "iterator", "file", "multipart"])
def test_request_bodies(flavour: str, kind: str, shop: tuple[str, Shop], tmp_path: Any) -> None:
    """Bytes, iterators (sync or async, as the client takes them), files and multipart
    bodies reach the server whole."""
    url, _ = shop
    path = _files(tmp_path)
    options: dict[str, Any]
    if kind == "bytes":
        options = {"content": b"file-bytes"}
    elif kind == "iterator":
        if flavour in ("bare", "sync"):
            options = {"content": iter([b"file-", b"bytes"])}
        else:

            async def chunks() -> AsyncIterator[bytes]:
                yield b"file-"
                yield b"bytes"

            options = {"content": chunks()}
    elif kind == "file":
        # A sync client streams a file object; an async one takes its bytes (or an async
        # iterator): httpx refuses a sync file on an AsyncClient.
        opened = path.open("rb")
        options = {"content": opened if flavour in ("bare", "sync") else opened.read()}
    else:
        opened = path.open("rb")
        options = {"files": {"receipt": opened}, "data": {"order": "7"}}
    try:
        response = send(flavour, url, "PUT", "/upload", **options)
    finally:
        if kind in ("file", "multipart"):
            opened.close()
    body = response.json()["body"]
    assert "file-bytes" in body
    if kind == "multipart":
        assert 'name="order"' in body and response.json()["headers"]["content-type"].startswith(
            "multipart/form-data"
        )
