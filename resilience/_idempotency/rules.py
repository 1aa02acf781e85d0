"""The server side of idempotency keys, sans-IO: keys, callers, records, what is kept.

Pure functions and values, no store and no I/O (layer 2); ``policy`` holds the options and the
store and turns a store's answers into what a shell does; ``resilience.asgi`` and
``resilience.wsgi`` move the bytes.

Unambiguous encodings: a record's name joins the policy's name, the caller's scope and the key
with a length before each part, and a fingerprint hashes method, path and query the same way
before the body, so no two different inputs share a record or a fingerprint (a ``:`` in a
key, a NUL in an ASGI path, a ``=`` in a query cannot shift one part into another).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

__all__ = [
    "NOT_STORED_HEADERS",
    "REDUCED_CAPACITY",
    "REPLAYED_HEADER",
    "StoredResponse",
    "caller_scope",
    "cookie_value",
    "fingerprint",
    "header_value",
    "kept",
    "parse_key",
    "problem",
    "record_name",
    "storable_headers",
]

REPLAYED_HEADER: Final = b"idempotent-replayed"
# The problem type of a 503 that says "we cannot serve this safely right now"
# (draft-ietf-httpapi-ratelimit-headers; distinct from quota-exceeded).
REDUCED_CAPACITY: Final = (
    "https://iana.org/assignments/http-problem-types#temporary-reduced-capacity"
)

# Never stored, never replayed: what belongs to one caller or one connection, not to the
# result. Set-Cookie (a replay to a retry would re-send the first caller's session; a retry
# with another caller identity is another record anyway, but a session may be rotated between
# attempts), authentication results, and the hop-by-hop fields of RFC 9110 §7.6.1.
NOT_STORED_HEADERS: Final = frozenset(
    {
        b"set-cookie",
        b"set-cookie2",
        b"authentication-info",
        b"proxy-authentication-info",
        b"www-authenticate",
        b"proxy-authenticate",
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)

# Statuses that say "not processed" or "not done, try again": the claim is released instead of
# stored, so the retry runs. 401/403/407: the request was refused before any work (a client
# whose token expired retries with a fresh one). 408/425/429: not done. Every 5xx: the handler
# failed or could not finish (Flask and Django render an exception as a 500 inside the app);
# its downstream calls repeat their derived keys when it runs again.
_NOT_KEPT: Final = frozenset({401, 403, 407, 408, 425, 429})

_MAX_KEY: Final = 255  # Stripe's limit
_SF_STRING: Final = re.compile(r'^"((?:[\x20-\x21\x23-\x5b\x5d-\x7e]|\\["\\])*)"$')
# A bare key (Stripe sends them unquoted): tchar, ":" and "/", starting with a letter, a digit
# or "*" (so not an sf-binary ``:...:``, an sf-boolean ``?1``, nor anything with parameters).
_BARE: Final = re.compile(r"^[A-Za-z0-9*][!#$%&'*+.^_`|~0-9A-Za-z:/-]*$")
# ...but not an sf-integer or sf-decimal: ``123`` is a number in the draft's syntax, not a key.
_NUMBER: Final = re.compile(r"^[0-9]{1,15}(?:\.[0-9]{1,3})?$")


def parse_key(raw: str | None) -> str | None:
    """The key of an ``Idempotency-Key`` field value, or ``None`` if absent.

    Accepts the draft's sf-string (``"abc"``) and, as Stripe does, a bare key (a token that is
    not a number); raises ``ValueError`` for other structured values (Integer ``123``, Decimal,
    Byte Sequence ``:YWJj:``, Boolean ``?1``, parameters, lists), empty keys and keys over
    255 characters.
    """
    if raw is None:
        return None
    value = raw.strip()
    match = _SF_STRING.match(value)
    if match is not None:
        key = match.group(1)
        if "\\" in key:
            key = re.sub(r"\\(.)", r"\1", key)
    elif _BARE.match(value) and not _NUMBER.match(value):
        key = value
    else:
        raise ValueError("Idempotency-Key must be an sf-string (or a bare token, not a number)")
    if not key or len(key) > _MAX_KEY:
        raise ValueError(f"Idempotency-Key must have 1 to {_MAX_KEY} characters")
    return key


def record_name(name: str, scope: str, key: str) -> str:
    """The record of ``key`` sent by caller ``scope`` to policy ``name``: each part after its
    length, so no two triples share a name."""
    return f"{len(name)}:{name}{len(scope)}:{scope}{key}"


def fingerprint(method: str, path: str, query: str, body: bytes) -> str:
    """What makes two requests "the same payload": method, target and body (Stripe compares
    endpoint and parameters), each part after its length, hashed (SHA-256, hex)."""
    digest = hashlib.sha256()
    for text in (method, path, query):
        part = text.encode("utf-8", "surrogateescape")
        digest.update(b"%d:" % len(part))
        digest.update(part)
    digest.update(body)  # the last part: the ones before it are delimited
    return digest.hexdigest()


def caller_scope(credential: str | None, cookie: str | None) -> str | None:
    """Who calls, as a hash of what proves it (a credential header's value, a session cookie),
    or ``None`` when the request carries neither. The secret itself is never kept."""
    if credential is None and cookie is None:
        return None
    digest = hashlib.sha256()
    for part in (credential, cookie):
        if part is None:
            digest.update(b"-")
        else:
            encoded = part.encode("utf-8", "surrogateescape")
            digest.update(b"%d:" % len(encoded))
            digest.update(encoded)
    return digest.hexdigest()[:32]


def cookie_value(header: str | None, name: str) -> str | None:
    """The value of cookie ``name`` in a ``Cookie`` field value (``a=1; b=2``), if present.
    Never raises: pairs without ``=`` are skipped; the first match wins."""
    if not header:
        return None
    for pair in header.split(";"):
        found, equals, value = pair.strip().partition("=")
        if equals and found == name:
            return value.strip()
    return None


def header_value(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> str | None:
    """The value of header ``name`` (lower-case) among raw ASGI-style headers, if present."""
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def kept(status: int) -> bool:
    """Whether a response with ``status`` is stored for replay (else the claim is released)."""
    return status < 500 and status not in _NOT_KEPT


def storable_headers(headers: Iterable[Sequence[bytes]]) -> list[tuple[bytes, bytes]]:
    """The headers kept with a stored response: all but ``NOT_STORED_HEADERS``."""
    return [(k, v) for k, v in headers if k.lower() not in NOT_STORED_HEADERS]


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """What is kept of a completed request: enough to answer its retries byte for byte."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def encode(self) -> bytes:
        head = json.dumps(
            [self.status, [[k.decode("latin-1"), v.decode("latin-1")] for k, v in self.headers]]
        )
        return head.encode() + b"\n" + self.body

    @classmethod
    def decode(cls, data: bytes) -> StoredResponse:
        head, _, body = data.partition(b"\n")
        status, headers = json.loads(head)
        return cls(
            int(status), [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers], body
        )


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    kind: str = "about:blank",
    retry_after: int | None = None,
    members: Mapping[str, object] | None = None,
) -> StoredResponse:
    """An RFC 9457 problem document (the idempotency and rate-limit drafts ask for them),
    with ``Retry-After`` when ``retry_after`` seconds are given and the type's own
    ``members`` (e.g. ``violated-policies``)."""
    document = {"type": kind, "title": title, "status": status, "detail": detail}
    body = json.dumps({**document, **members} if members else document)
    headers = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", b"%d" % len(body)),
    ]
    if retry_after is not None:
        headers.append((b"retry-after", b"%d" % retry_after))
    return StoredResponse(status, headers, body.encode())
