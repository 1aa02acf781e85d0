"""What the ASGI middleware share: the ASGI types, answering at once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from resilience._idempotency.rules import StoredResponse

__all__ = ["ASGIApp", "Message", "Receive", "Scope", "Send", "answer"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def answer(send: Send, response: StoredResponse | None) -> None:
    """Send ``response`` whole, without running the app."""
    assert response is not None
    await send(
        {"type": "http.response.start", "status": response.status, "headers": response.headers}
    )
    await send({"type": "http.response.body", "body": response.body})
