"""ASGI ``IdempotencyMiddleware``: run each keyed POST/PATCH once, replay its retries."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from resilience._context import end_serving_key, serving_key
from resilience._idempotency import (
    Idempotency,
    StoredResponse,
    Verdict,
    fingerprint,
    header_value,
)
from resilience.asgi._shared import ASGIApp, Message, Receive, Scope, Send, answer, read_body

__all__ = ["IdempotencyMiddleware"]


class IdempotencyMiddleware:
    """Run each keyed POST/PATCH once; answer its retries with the stored response.

    The rules (draft-ietf-httpapi-idempotency-key-header): 409 while running, 422 on a reused
    key, 400 on a malformed one, stored replay with ``Idempotent-Replayed: true``. The store must
    answer without blocking the event loop: ``MemoryStore``, or ``RedisStore`` over a
    ``redis.asyncio`` client. The response of a claimed request is streamed to the client as
    the application sends it, and kept in memory until it is stored.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        store: Any = None,
        methods: Iterable[str] = ("POST", "PATCH"),
        required: bool = False,
        ttl: float = 86_400.0,
        lease: float = 60.0,
        max_body: int = 1 << 20,
        key_scope: Callable[[Any], str] | None = None,
        name: str = "idempotency",
    ) -> None:
        self.app = app
        # Every keyword argument above, passed on as is (the signature stays explicit).
        self.rules = Idempotency(**{k: v for k, v in locals().items() if k not in ("self", "app")})
        if getattr(self.rules.store, "is_async", True) is False:
            raise TypeError(
                "store: the ASGI middleware needs a store that does not block the event loop "
                "(MemoryStore, or RedisStore over redis.asyncio)"
            )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rules = self.rules
        method = scope["method"]
        screened = rules.screen(method, header_value(scope["headers"], b"idempotency-key"), scope)
        if isinstance(screened, Verdict):
            if screened.run:
                await self.app(scope, receive, send)
            else:
                await answer(send, screened.response)
            return
        body = await read_body(receive, rules.max_body)
        if body is None:
            await answer(send, rules.too_large().response)
            return
        query = scope.get("query_string", b"").decode("latin-1")
        store = rules.store
        claim = await store.idempotency_claim_async(
            screened, fingerprint(method, scope["path"], query, body), rules.lease
        )
        verdict = rules.judge(screened, claim)
        if not verdict.run:
            await answer(send, verdict.response)
            return
        await self._run(scope, receive, send, body, screened, verdict.token)

    async def _run(
        self, scope: Scope, receive: Receive, send: Send, body: bytes, key: str, token: str | None
    ) -> None:
        rules, store = self.rules, self.rules.store
        started: list[Message] = []
        chunks: list[bytes] = []
        body_given = False

        async def receive_again() -> Message:  # the body was read to fingerprint it
            nonlocal body_given
            if not body_given:
                body_given = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        async def keep(message: Message) -> None:
            if message["type"] == "http.response.start":
                started.append(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        serving = serving_key(key)  # outgoing resilient calls derive their keys from it
        try:
            await self.app(scope, receive_again, keep)
        except BaseException:
            if token is not None:  # cancelled or failed: the retry must run afresh
                await store.idempotency_release_async(key, token)
            raise
        finally:
            end_serving_key(serving)
        if token is None:
            return  # the store was down and its on_error said allow: nothing to keep
        if started and rules.keeps(started[0]["status"]):
            stored = StoredResponse(
                started[0]["status"],
                [tuple(h) for h in started[0].get("headers", [])],
                b"".join(chunks),
            )
            await store.idempotency_complete_async(key, token, stored.encode(), rules.ttl)
        else:
            await store.idempotency_release_async(key, token)
