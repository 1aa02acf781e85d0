"""The server side of idempotency keys, sans-IO: turn a retried POST into one effect.

draft-ietf-httpapi-idempotency-key-header (-06 §2.6-2.7), with Stripe's and Brandur Leach's
practice where the draft is silent. For a request carrying ``Idempotency-Key``:

- first time (key unknown): claim it with a lease and an owner token, run the handler, store
  its response under the key for ``ttl`` seconds -> **claimed**, then **completed**;
- the same key and the same payload again, after completion: answer the stored response
  (success or error, with ``Idempotent-Replayed: true``) without running the handler ->
  **replayed**;
- the same key while the first is still running: **409 Conflict** (retry later, unchanged);
- the same key with a different payload (method, path, query or body): **422**;
- a malformed key, or a missing one where keys are ``required``: **400**.

A handler that raises, or answers a status saying "not done, try again" (408, 425, 429, 502,
503, 504 — a 504 is also what ``DeadlineMiddleware`` answers when no time is left), releases the
claim, so the retry runs the handler afresh; its downstream calls repeat their derived keys.
A claim whose owner died expires after ``lease`` seconds. Keys are scoped (``key_scope``: e.g.
per API client) so one client cannot read another's stored responses. The stores do each step
atomically; the ASGI and WSGI shells (``resilience.asgi``, ``resilience.wsgi``) only move bytes.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, NamedTuple

from resilience import _events
from resilience._validate import check_duration

__all__ = [
    "REPLAYED_HEADER",
    "Claim",
    "Idempotency",
    "Outcome",
    "StoredResponse",
    "Verdict",
    "fingerprint",
    "parse_key",
    "problem",
]

REPLAYED_HEADER: Final = b"idempotent-replayed"
# "Not done (or not known to be done), try again": timeouts, throttling, gateways. A re-run is
# safe for the handler's own downstream calls, whose keys derive from the incoming one.
_RETRYABLE_STATUSES: Final = frozenset({408, 425, 429, 502, 503, 504})
_MAX_KEY: Final = 255  # Stripe's limit
_SF_STRING: Final = re.compile(r'^"((?:[\x20-\x21\x23-\x5b\x5d-\x7e]|\\["\\])*)"$')
_TOKEN: Final = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z:/-]+$")

# "unavailable": the store failed and its on_error says deny (with "allow", a failing store
# answers "claimed" with no token: the request runs unprotected and nothing is stored).
Outcome = Literal["claimed", "replay", "in_progress", "mismatch", "unavailable"]


class Claim(NamedTuple):
    """A store's answer to a claim: ``token`` when claimed, ``response`` when replayed."""

    outcome: Outcome
    token: str | None = None
    response: bytes | None = None


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


def parse_key(raw: str | None) -> str | None:
    """The key of an ``Idempotency-Key`` field value, or ``None`` if absent.

    Accepts the draft's sf-string (``"abc"``) and, as Stripe does, a bare token; raises
    ``ValueError`` for anything else, empty keys and keys over 255 characters.
    """
    if raw is None:
        return None
    value = raw.strip()
    match = _SF_STRING.match(value)
    if match is not None:
        key = re.sub(r"\\(.)", r"\1", match.group(1))
    elif _TOKEN.match(value):
        key = value
    else:
        raise ValueError("Idempotency-Key must be an sf-string or a token")
    if not key or len(key) > _MAX_KEY:
        raise ValueError(f"Idempotency-Key must have 1 to {_MAX_KEY} characters")
    return key


def fingerprint(method: str, path: str, query: str, body: bytes) -> str:
    """What makes two requests "the same payload": method, target and body (Stripe compares
    endpoint and parameters)."""
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), query.encode()):
        digest.update(part)
        digest.update(b"\0")
    digest.update(body)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a shell does with a request: ``run`` it (holding ``token`` when claimed), or
    answer ``response`` at once (a replay, or an error)."""

    run: bool
    key: str | None = None
    token: str | None = None
    response: StoredResponse | None = None


_PASS: Final = Verdict(run=True)


def problem(status: int, title: str, detail: str, *, kind: str = "about:blank") -> StoredResponse:
    """An RFC 9457 problem document (the idempotency and rate-limit drafts ask for them)."""
    body = json.dumps({"type": kind, "title": title, "status": status, "detail": detail})
    return StoredResponse(
        status,
        [(b"content-type", b"application/problem+json"), (b"content-length", b"%d" % len(body))],
        body.encode(),
    )


class Idempotency:
    """The configuration and the decisions, shared by the ASGI and WSGI middleware.

    ``store`` is a ``MemoryStore`` (default) or a ``RedisStore``; ``methods`` are those whose
    keys are honoured (POST and PATCH: the others are idempotent already); ``ttl`` is how long a
    completed response is kept (Stripe: 24 h); ``lease`` how long a running request holds its
    key before it is presumed dead; ``max_body`` the largest request body fingerprinted (larger
    keyed requests get 413); ``key_scope`` maps the request (ASGI scope or WSGI environ) to the
    caller's identity, prefixed to the key.
    """

    def __init__(
        self,
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
        from resilience.stores import MemoryStore  # a leaf of the house: stores import no policy

        check_duration(ttl, "ttl", allow_zero=False)
        check_duration(lease, "lease", allow_zero=False)
        if isinstance(max_body, bool) or not isinstance(max_body, int) or max_body < 0:
            raise ValueError(f"max_body must be an int >= 0, got {max_body!r}")
        if key_scope is not None and not callable(key_scope):
            raise TypeError(f"key_scope must be a callable or None, got {key_scope!r}")
        if isinstance(methods, str) or not all(isinstance(method, str) for method in methods):
            raise TypeError(f"methods must be a collection of method names, got {methods!r}")
        chosen = tuple(method.upper() for method in methods)
        if not chosen:
            raise ValueError(f"methods must name at least one method, got {methods!r}")
        if not isinstance(required, bool):
            raise TypeError(f"required must be True or False, got {required!r}")
        self.store = store if store is not None else MemoryStore()
        if not hasattr(self.store, "idempotency_claim"):
            raise TypeError(f"store must be a MemoryStore or RedisStore, got {store!r}")
        self.methods = frozenset(chosen)
        self.required = required
        self.ttl = float(ttl)
        self.lease = float(lease)
        self.max_body = max_body
        self.key_scope = key_scope
        self.name = name

    # -- before the handler ------------------------------------------------------------------

    def screen(self, method: str, raw_key: str | None, request: Any) -> Verdict | str:
        """First look, before the body is read: a final verdict, or the scoped key to claim."""
        if method not in self.methods:
            return _PASS
        try:
            key = parse_key(raw_key)
        except ValueError as exc:
            return Verdict(False, response=problem(400, "Invalid Idempotency-Key", str(exc)))
        if key is None:
            if self.required:
                detail = f"{method} requests here must carry an Idempotency-Key header"
                return Verdict(False, response=problem(400, "Idempotency-Key required", detail))
            return _PASS
        scope = self.key_scope(request) if self.key_scope is not None else ""
        return f"{self.name}:{scope}:{key}"

    def too_large(self) -> Verdict:
        detail = f"keyed request bodies are limited to {self.max_body} bytes"
        return Verdict(False, response=problem(413, "Request body too large", detail))

    def judge(self, key: str, claim: Claim) -> Verdict:
        """Turn the store's answer to a claim into what the shell does."""
        if claim.outcome == "claimed":
            return Verdict(True, key=key, token=claim.token)
        if claim.outcome == "replay":
            assert claim.response is not None
            self._announce(_events.IdempotentReplayed)
            stored = StoredResponse.decode(claim.response)
            headers = [*stored.headers, (REPLAYED_HEADER, b"true")]
            return Verdict(
                False, key=key, response=StoredResponse(stored.status, headers, stored.body)
            )
        if claim.outcome == "unavailable":
            detail = "the idempotency store is unavailable; retry later with the same key"
            response = problem(503, "Idempotency store unavailable", detail)
            response.headers.append((b"retry-after", b"1"))
            return Verdict(False, key=key, response=response)
        if claim.outcome == "in_progress":
            self._announce(_events.IdempotencyConflict)
            detail = "a request with this Idempotency-Key is still being processed; retry later"
            return Verdict(False, key=key, response=problem(409, "Request in progress", detail))
        self._announce(_events.IdempotencyMismatch)
        detail = "this Idempotency-Key was used with a different request payload"
        return Verdict(False, key=key, response=problem(422, "Idempotency-Key reused", detail))

    # -- after the handler -------------------------------------------------------------------

    def keeps(self, status: int) -> bool:
        """Whether a response is stored for replay (else the claim is released)."""
        return status not in _RETRYABLE_STATUSES

    def _announce(self, kind: Callable[[str], _events.Event]) -> None:
        if _events.listeners:
            _events.emit(kind(self.name))


def header_value(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> str | None:
    """The value of header ``name`` (lower-case) among raw ASGI-style headers, if present."""
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None
