"""ASGI ``IdempotencyMiddleware``: run each keyed POST/PATCH once, replay its retries."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from resilience._context import end_serving_key, serving_key
from resilience._idempotency.policy import Idempotency, Verdict
from resilience._idempotency.rules import StoredResponse, fingerprint, storable_headers
from resilience.asgi._keeper import Held, Keeper
from resilience.asgi._shared import ASGIApp, Message, Receive, Scope, Send, answer
from resilience.stores._protocols import AsyncIdempotencyStore

__all__ = ["IdempotencyMiddleware"]


class IdempotencyMiddleware:
    """Run each keyed POST/PATCH once; answer its retries with the stored response.

    The rules (draft-ietf-httpapi-idempotency-key-header): records per caller; 409 (with
    ``Retry-After``) while running, 422 on a reused key, 400 on a malformed key or without a
    caller identity, 503 while the store is down; replays marked ``Idempotent-Replayed:
    true``. The store must answer without blocking the event loop: ``MemoryStore``, or
    ``RedisStore`` over a ``redis.asyncio`` client (asyncio only). Runs under asyncio and trio
    servers alike (``hypercorn --worker-class trio``).

    Options: ``store`` (default: a ``MemoryStore``); ``methods`` whose keys are honoured
    (POST, PATCH); ``required`` (a keyless request gets 400); ``ttl`` (s a response is kept);
    ``lease`` (s a claim lives without its heartbeat, renewed every ``lease / 3``);
    ``max_body`` / ``max_response`` (bytes read / kept); who calls: the hash of
    ``caller_header`` (``Authorization``) and/or of cookie ``caller_cookie``, or
    ``key_scope(scope)``, or ``shared_keys=True`` (one namespace for all: the explicit unsafe
    choice); ``fail_open`` (run unprotected while the store is down instead of 503); ``name``:
    the namespace of the records and the name in telemetry, required on a shared store
    (anything but a ``MemoryStore``: two services on one Redis must not meet each other's
    records).

    The request body is read whole before the handler runs (a client that leaves halfway
    gets nothing run). The response streams to the client as the application sends it; its
    last chunk waits until the record is stored, so a retry that follows it at once is
    replayed. A response over ``max_response`` bytes, or streamed without a
    ``Content-Length``, passes through unbuffered and is not stored (its retries get 410).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        store: AsyncIdempotencyStore | None = None,
        methods: Iterable[str] = ("POST", "PATCH"),
        required: bool = False,
        ttl: float = 86_400.0,
        lease: float = 60.0,
        max_body: int = 1 << 20,
        max_response: int = 1 << 20,
        key_scope: Callable[[Any], str | None] | None = None,
        caller_header: str | None = "Authorization",
        caller_cookie: str | None = None,
        shared_keys: bool = False,
        fail_open: bool = False,
        name: str | None = None,
    ) -> None:
        self.app = app
        # Every keyword argument above, passed on as is (the signature stays explicit).
        self.rules = Idempotency(**{k: v for k, v in locals().items() if k not in ("self", "app")})
        if not isinstance(self.rules.store, AsyncIdempotencyStore) or (
            getattr(self.rules.store, "is_async", True) is False
        ):
            raise TypeError(
                "store: the ASGI middleware needs a store that does not block the event loop "
                "(MemoryStore, or RedisStore over redis.asyncio)"
            )
        self._methods = self.rules.methods
        header = self.rules.caller_header
        self._credential = header.lower().encode("latin-1") if header else None
        self._keeper = Keeper(self.rules)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in self._methods:
            await self.app(scope, receive, send)
            return
        rules = self.rules
        keys: list[str] = []
        credential = length = None
        cookies: list[str] = []
        for name, value in scope["headers"]:
            if name == b"idempotency-key":
                keys.append(value.decode("latin-1"))
            elif name == self._credential:
                credential = value.decode("latin-1")
            elif name == b"cookie":
                cookies.append(value.decode("latin-1"))
            elif name == b"content-length":
                length = value
        cookie = "; ".join(cookies) if cookies else None
        screened = rules.screen(keys, scope, credential, cookie)
        if isinstance(screened, Verdict):
            if screened.run:
                await self.app(scope, receive, send)
            else:
                await answer(send, rules.answered(screened, scope["method"], scope["path"]))
            return
        body = await _read_body(receive, rules.max_body, length)
        if not isinstance(body, bytes):
            if body is not None:  # too large or shorter than its length: say so
                refusal = rules.too_large() if body else rules.incomplete()
                await answer(send, rules.answered(refusal, scope["method"], scope["path"]))
            return  # the client left halfway: nothing ran, nothing is kept, nobody to answer
        query = scope.get("query_string", b"").decode("latin-1")
        payload = fingerprint(scope["method"], _target(scope), query, body)
        claim = await rules.store.idempotency_claim_async(screened, payload, rules.lease)
        verdict = rules.judge(claim)
        if not verdict.run:
            await answer(send, rules.answered(verdict, scope["method"], scope["path"]))
            return
        replay = _replay(body, receive)
        serving = serving_key(screened)  # outgoing resilient calls derive their keys from it
        try:
            if verdict.token is None:  # the store is down and fail_open said run anyway
                await self.app(scope, replay, send)
            else:
                held = self._keeper.hold(screened, payload, verdict.token)
                await _Run(rules, self._keeper, held, send).run(self.app, scope, replay)
        finally:
            end_serving_key(serving)


class _Run:
    """One claimed request: relay its response, keep it (up to ``max_response``), store it
    before its last chunk leaves, or release the claim."""

    __slots__ = (
        "buffering",
        "chunks",
        "done",
        "headers",
        "held",
        "keeper",
        "length",
        "rules",
        "send",
        "size",
        "started",
        "status",
    )

    def __init__(self, rules: Idempotency, keeper: Keeper, held: Held, send: Send) -> None:
        self.rules, self.keeper, self.held, self.send = rules, keeper, held, send
        self.started = time.monotonic()
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.length: int | None = None
        self.chunks: list[bytes] = []
        self.size = 0
        self.buffering = True
        self.done = False

    async def run(self, app: ASGIApp, scope: Scope, receive: Receive) -> None:
        try:
            await app(scope, receive, self.keep)
        except BaseException:
            if not self.done:  # cancelled or failed before the end: the retry runs afresh
                await self.finish(None)
            raise
        if not self.done:  # no response, or an unfinished one
            await self.finish(None)

    async def keep(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.status = message["status"]
            self.headers = [(k, v) for k, v in message.get("headers", ())]
            for name, value in self.headers:
                if name.lower() == b"content-length":
                    self.length = int(value) if value.isdigit() else None
            if self.length is not None and self.length > self.rules.max_response:
                self.buffering = False
        elif kind == "http.response.body" and not self.done:
            chunk = message.get("body", b"")
            more = message.get("more_body", False)
            if self.buffering:
                self.size += len(chunk)
                if self.size > self.rules.max_response or (more and self.length is None):
                    self.buffering, self.chunks = False, []  # too large, or streamed: relay
                else:
                    self.chunks.append(chunk)
            if not more:  # the last chunk waits until the record is stored
                await self.finish(b"".join(self.chunks) if self.buffering else None, ended=True)
        await self.send(message)

    async def finish(self, body: bytes | None, *, ended: bool = False) -> None:
        """Store the response (``body``; ``None`` with ``ended``: it was not kept) or, when it
        did not end or says "not processed", release the claim."""
        self.done = True
        rules, store, held = self.rules, self.rules.store, self.held
        await self.keeper.drop(held)
        rules.took(time.monotonic() - self.started)
        if not ended or not rules.keeps(self.status):
            await store.idempotency_release_async(held.record, held.token)
            return
        if body is None:
            data = rules.unkept(self.status)
        else:
            data = StoredResponse(self.status, storable_headers(self.headers), body).encode()
        outcome = await store.idempotency_complete_async(
            held.record, held.fingerprint, held.token, data, rules.ttl
        )
        if outcome == "lost" and not held.lost:
            rules.claim_lost("complete")
        elif outcome == "unavailable":
            self.keeper.complete_later(held, data)


async def _read_body(receive: Receive, limit: int, length: bytes | None) -> bytes | bool | None:
    """The whole request body; ``True`` once it passes ``limit`` bytes, ``False`` if it ends
    short of its ``Content-Length``, ``None`` if the client left before the end."""
    if length is not None and length.isdigit() and int(length) > limit:
        return True
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None  # http.disconnect: an incomplete body is never run as a complete one
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return True
        parts.append(chunk)
        if not message.get("more_body", False):
            if length is not None and length.isdigit() and int(length) != size:
                return False
            return b"".join(parts)


def _target(scope: Scope) -> str:
    """The path as the client sent it, for the fingerprint: ``raw_path`` when the server gives
    it, since ``path`` is decoded lossily (uvicorn turns ``%ff`` and ``%fe`` both into U+FFFD,
    and ``%2F`` into ``/``), which would make two requests one payload."""
    raw: bytes | None = scope.get("raw_path")
    return raw.decode("latin-1") if raw else scope["path"]


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` for the app: the body read to fingerprint it, then the client's messages."""
    given = False

    async def receive_again() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return receive_again
