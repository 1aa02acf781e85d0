"""What the WSGI middleware share: the WSGI types, answering at once."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from resilience._idempotency.rules import StoredResponse

__all__ = ["StartResponse", "WSGIApp", "answer", "close", "native_headers", "status_line", "whole"]

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def answer(
    start_response: StartResponse, response: StoredResponse | None, exc_info: Any = None
) -> list[bytes]:
    """Start ``response`` and return its body, without running the app (``exc_info``: to
    replace a response the app started but did not send)."""
    assert response is not None
    start_response(status_line(response.status), native_headers(response.headers), exc_info)
    return [response.body]


def whole(result: Iterable[bytes]) -> bool:
    """Whether an app's iterable is a whole response, made already (iterating it runs no app
    code): a list or tuple, or a framework response that says it is not streaming (Django's
    ``HttpResponse.streaming``). Anything else may be a stream."""
    return isinstance(result, (list, tuple)) or getattr(result, "streaming", None) is False


def close(result: Iterable[bytes]) -> None:
    """Call the iterable's ``close()``, if it has one (PEP 3333)."""
    closer = getattr(result, "close", None)
    if closer is not None:
        closer()


def status_line(status: int) -> str:
    """``"201 Created"`` (just ``"599"`` for a code without a phrase)."""
    return f"{status} {_reason(status)}".rstrip()


def native_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    """Raw headers as WSGI's native strings (latin-1)."""
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers]


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
