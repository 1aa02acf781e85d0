"""What a dead-letter queue keeps: the ``Letter`` (a request or a call, enough to send it again)
and the ``Entry`` around it (id, why it ended, when, how often it has been replayed, state).

Values only, and the one rule about what may be kept: credentials never are. The replaying
client supplies its own (``Authorization``, ``Cookie``, ``Proxy-Authorization``, the names the
user adds, and the ``user:password@`` of a URL), so a stolen queue file holds no secret from the
original request. Headers that describe one transmission (``Host``, ``Content-Length``,
hop-by-hop fields) or that our transport writes per attempt (``Request-Timeout-Ms``, trace
context) are not kept either: the replay writes its own.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal, NamedTuple

import httpx

__all__ = [
    "CREDENTIAL_HEADERS",
    "NOT_KEPT_HEADERS",
    "Depth",
    "Entry",
    "Kind",
    "Letter",
    "State",
    "call_letter",
    "decode_letter",
    "encode_letter",
    "request_letter",
    "secret_names",
]

# Credentials: the replaying client brings its own. Users add names (``secret_headers=``).
CREDENTIAL_HEADERS: Final = frozenset({"authorization", "cookie", "proxy-authorization"})

# One transmission's framing, hop-by-hop fields (RFC 9110 §7.6.1), and what our transport
# writes per attempt: the replay's own client writes them again.
NOT_KEPT_HEADERS: Final = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "expect",
        "request-timeout-ms",
        "traceparent",
        "tracestate",
        "baggage",
    }
)

Kind = Literal["http", "call"]
State = Literal["ready", "parked"]


@dataclass(frozen=True, slots=True)
class Letter:
    """A request or a call to send again.

    For ``kind="http"``: ``method``, ``target`` (the URL, without credentials), ``headers`` (as
    kept) and ``body``. For ``kind="call"``: ``target`` is the handler's registered name and
    ``body`` the JSON of ``{"args": [...], "kwargs": {...}}``. ``key`` is the
    ``Idempotency-Key`` field value as sent (or the call's key); ``None`` when there was none.
    """

    kind: Kind
    target: str
    method: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    key: str | None = None

    def arguments(self) -> tuple[list[Any], dict[str, Any]]:
        """A call letter's positional and keyword arguments."""
        decoded = json.loads(self.body)
        return list(decoded["args"]), dict(decoded["kwargs"])


@dataclass(frozen=True, slots=True)
class Entry:
    """One letter in a queue.

    ``why`` is a small fixed word for metrics (exhausted, in_progress, unknown, deadline,
    breaker_open, rejected, unreachable, failed) and ``reason`` the sentence for people;
    ``created`` is wall-clock time (epoch seconds); ``attempts`` how many attempts the original
    call made (0 when unknown); ``replays`` how many replays have failed so far; ``state`` is
    "ready" (waiting for a replay) or "parked" (given up on, kept for inspection, with
    ``last_error`` saying why).
    """

    id: str
    letter: Letter
    why: str
    reason: str
    created: float
    attempts: int = 0
    replays: int = 0
    state: State = "ready"
    last_error: str = ""


class Depth(NamedTuple):
    """How many entries wait for a replay (``ready``, leased ones included) and how many were
    given up on (``parked``)."""

    ready: int
    parked: int


def secret_names(extra: Iterable[str]) -> frozenset[str]:
    """The header names not kept: credentials plus ``extra`` (checked, lower-cased)."""
    names = set(CREDENTIAL_HEADERS)
    if isinstance(extra, str):
        raise TypeError(f"secret_headers must be a collection of names, got the string {extra!r}")
    for name in extra:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"secret_headers must hold header names, got {name!r}")
        names.add(name.strip().lower())
    return frozenset(names)


def request_letter(request: httpx.Request, secrets: frozenset[str], max_body: int) -> Letter | str:
    """The letter for ``request``, or why it cannot be kept (a sentence)."""
    stream = request.stream
    if not isinstance(stream, httpx.ByteStream):
        if isinstance(stream, httpx._multipart.MultipartStream):
            return "the body is a multipart upload (its files are not kept)"
        return "the body is a stream that was already sent"
    body = bytes(request.read())
    if len(body) > max_body:
        return f"the body has {len(body)} bytes, over max_body={max_body}"
    headers = tuple(
        (name, value)
        for name, value in (
            (raw.decode("latin-1"), value.decode("latin-1")) for raw, value in request.headers.raw
        )
        if name.lower() not in secrets and name.lower() not in NOT_KEPT_HEADERS
    )
    url = request.url
    if url.userinfo:
        url = url.copy_with(username=None, password=None)
    return Letter(
        "http",
        str(url),
        request.method,
        headers,
        body,
        request.headers.get("idempotency-key"),
    )


def call_letter(
    name: str, args: tuple[Any, ...], kwargs: dict[str, Any], key: str | None
) -> Letter | str:
    """The letter for a call, or why it cannot be kept (arguments JSON cannot hold)."""
    try:
        body = json.dumps({"args": list(args), "kwargs": kwargs}, allow_nan=False)
    except (TypeError, ValueError) as exc:
        return f"its arguments are not JSON-serialisable ({exc})"
    return Letter("call", name, body=body.encode(), key=key)


def encode_letter(letter: Letter) -> dict[str, Any]:
    """``letter`` as JSON-ready values (the body in base64)."""
    return {
        "kind": letter.kind,
        "target": letter.target,
        "method": letter.method,
        "headers": [list(pair) for pair in letter.headers],
        "body": base64.b64encode(letter.body).decode("ascii"),
        "key": letter.key,
    }


def decode_letter(data: dict[str, Any]) -> Letter:
    """The letter ``encode_letter`` made ``data`` from."""
    kind = data["kind"]
    if kind not in ("http", "call"):
        raise ValueError(f"unknown letter kind {kind!r}")
    return Letter(
        kind,
        str(data["target"]),
        str(data["method"]),
        tuple((str(name), str(value)) for name, value in data["headers"]),
        base64.b64decode(data["body"]),
        None if data["key"] is None else str(data["key"]),
    )
