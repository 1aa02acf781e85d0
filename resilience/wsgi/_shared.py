"""What the WSGI middleware share: the WSGI types, reading a body, answering at once."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from resilience._idempotency import StoredResponse

__all__ = ["StartResponse", "WSGIApp", "answer", "read_body"]

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def read_body(environ: dict[str, Any], limit: int) -> bytes | None:
    """The request body (``CONTENT_LENGTH`` bytes), or ``None`` if it passes ``limit``."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > limit:
        return None
    return environ["wsgi.input"].read(length) if length > 0 else b""


def answer(start_response: StartResponse, response: StoredResponse | None) -> list[bytes]:
    """Start ``response`` and return its body, without running the app."""
    assert response is not None
    reason = _reason(response.status)
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in response.headers]
    start_response(f"{response.status} {reason}".rstrip(), headers)
    return [response.body]


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
