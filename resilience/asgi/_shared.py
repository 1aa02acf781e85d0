"""What the ASGI middleware share: the ASGI types, reading a body, answering at once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from resilience._idempotency import StoredResponse

__all__ = ["ASGIApp", "Message", "Receive", "Scope", "Send", "answer", "expired", "read_body"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def expired() -> StoredResponse:
    """What a request that arrives with no time left gets."""
    return StoredResponse(504, [(b"content-length", b"0")], b"")


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or ``None`` once it passes ``limit`` bytes."""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(parts)  # the client left; the app will see the disconnect
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


async def answer(send: Send, response: StoredResponse | None) -> None:
    """Send ``response`` whole, without running the app."""
    assert response is not None
    await send(
        {"type": "http.response.start", "status": response.status, "headers": response.headers}
    )
    await send({"type": "http.response.body", "body": response.body})
