"""``Idempotency``: the options, the store, and the decisions both middleware shells share.

It validates and freezes the options, names each keyed request's record (scoped by caller),
and turns a store's answer to a claim into a ``Verdict``: run the handler (holding a token), or
answer at once (a replay, 409, 422, 400, 503). The shells (``resilience.asgi``,
``resilience.wsgi``) move bytes, keep the lease alive and complete or release the claim.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from resilience import _events
from resilience._idempotency.rules import (
    REDUCED_CAPACITY,
    REPLAYED_HEADER,
    StoredResponse,
    caller_scope,
    cookie_value,
    kept,
    parse_key,
    problem,
    record_name,
)
from resilience._validate import check_duration, check_name
from resilience.stores._memory import MemoryStore
from resilience.stores._protocols import AsyncIdempotencyStore, Claim, IdempotencyStore
from resilience.stores._redis_idempotency import HEARTBEAT

__all__ = ["OUTAGE_RETRY", "PASS", "Idempotency", "Verdict"]

_log: Final = logging.getLogger("resilience")
_HEADER_NAME: Final = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a shell does with a request: ``run`` it (holding ``token`` when claimed; no token:
    unprotected, nothing will be stored), or answer ``response`` at once."""

    run: bool
    token: str | None = None
    response: StoredResponse | None = None
    decision: str = ""  # a stable word for the log (``replayed``, ``in_progress``...)
    detail: str = ""


def _refusal(status: int, title: str, detail: str, decision: str, **options: Any) -> Verdict:
    return Verdict(
        False, response=problem(status, title, detail, **options), decision=decision, detail=detail
    )


PASS: Final = Verdict(run=True)
# Seconds between heartbeat steps while the store is down: short, so that a claim is taken back
# soon after a restarted store returns empty, before a retry can claim the key afresh.
OUTAGE_RETRY: Final = 0.25


class Idempotency:
    """The configuration and the decisions, shared by the ASGI and WSGI middleware.

    ``store``: a ``MemoryStore`` (default) or a ``RedisStore`` (any idempotency store).
    ``name``: the namespace of the records and the name in telemetry; required when the store
    may be shared (anything but a ``MemoryStore``), else "idempotency". ``methods``: those
    whose keys are honoured (POST and PATCH: the others are idempotent already). ``ttl``: how
    long a completed response is kept (Stripe: 24 h). ``lease``: how long a claim lives without
    its heartbeat (the shells renew it every ``beat`` s while the handler runs: ``lease / 3``,
    and at most 1 s on a store that can lose records by restarting, as Redis can).
    ``max_body``: the largest keyed request body read and fingerprinted (else 413).
    ``max_response``: the largest response stored; a larger one, or a streamed one without a
    ``Content-Length``, passes through unbuffered and its retries get 410.

    Who calls (records are per caller, so nobody replays another's response): the hash of the
    ``caller_header`` field (default ``Authorization``) and/or of cookie ``caller_cookie``; or
    ``key_scope(request)`` (the ASGI scope or WSGI environ -> an id such as the account, or
    ``None`` or ``""`` when unknown; any other type is a 500 logged naming ``key_scope``)
    instead; or, explicitly, ``shared_keys=True``: one namespace for everyone. A keyed
    request whose caller cannot be told is refused (400).

    ``fail_open``: when the store cannot answer, run keyed requests unprotected (``True``) or
    refuse them with 503 + ``Retry-After`` (``False``, the default: exactly-once or nothing).
    """

    def __init__(
        self,
        *,
        store: IdempotencyStore | AsyncIdempotencyStore | None = None,
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
        # The store first (something that is no store is refused as such), then the name.
        if store is not None and not isinstance(store, (IdempotencyStore, AsyncIdempotencyStore)):
            raise TypeError(
                "store must offer the idempotency steps (idempotency_claim, _renew, _complete, "
                f"_release, or their async twins: a MemoryStore or a RedisStore), got {store!r}"
            )
        name = check_name(
            name,
            "idempotency",
            shared=store is not None and not isinstance(store, MemoryStore),
            kind="an idempotency middleware",
            why=(
                "the name is the namespace of its records, so two unnamed services on one Redis "
                "would meet each other's records whenever a caller sends both the same key (a "
                "422, or a replay of the other's response)"
            ),
        )
        check_duration(ttl, "ttl", allow_zero=False)
        check_duration(lease, "lease", allow_zero=False)
        _check_size(max_body, "max_body")
        _check_size(max_response, "max_response")
        if key_scope is not None and not callable(key_scope):
            raise TypeError(f"key_scope must be a callable or None, got {key_scope!r}")
        if isinstance(methods, str) or not all(isinstance(method, str) for method in methods):
            raise TypeError(f"methods must be a collection of method names, got {methods!r}")
        chosen = tuple(method.upper() for method in methods)
        if not chosen:
            raise ValueError(f"methods must name at least one method, got {methods!r}")
        for flag, value in (("required", required), ("shared_keys", shared_keys)):
            if not isinstance(value, bool):
                raise TypeError(f"{flag} must be True or False, got {value!r}")
        if not isinstance(fail_open, bool):
            raise TypeError(f"fail_open must be True or False, got {fail_open!r}")
        if caller_header is not None and not (
            isinstance(caller_header, str) and _HEADER_NAME.match(caller_header)
        ):
            raise ValueError(f"caller_header must be a header name or None, got {caller_header!r}")
        if caller_cookie is not None and not (
            isinstance(caller_cookie, str) and _HEADER_NAME.match(caller_cookie)
        ):
            raise ValueError(f"caller_cookie must be a cookie name or None, got {caller_cookie!r}")
        if shared_keys and key_scope is not None:
            raise ValueError("key_scope and shared_keys=True exclude each other: choose one")
        if not shared_keys and key_scope is None and caller_header is caller_cookie is None:
            raise ValueError(
                "idempotency records are per caller: give caller_header=, caller_cookie= or "
                "key_scope= to say who calls, or shared_keys=True for one namespace for all"
            )
        # Any: the shells use one colour of steps each, checked at their construction.
        self.store: Any = store if store is not None else MemoryStore()
        self.methods = frozenset(chosen)
        self.required = required
        self.ttl = float(ttl)
        self.lease = float(lease)
        self.max_body = max_body
        self.max_response = max_response
        self.key_scope = key_scope
        self.shared_keys = shared_keys
        self.fail_open = fail_open
        self.caller_header = None if shared_keys or key_scope else caller_header
        self.caller_cookie = None if shared_keys or key_scope else caller_cookie
        self.name = name
        # Seconds between renewals. A store that may restart empty (any but the memory store,
        # which dies with the process) is renewed at least every HEARTBEAT s, so a running
        # request takes its record back within the restarted Redis's fence (RESTART_FENCE).
        self.beat = self.lease / 3.0
        if not isinstance(self.store, MemoryStore):
            self.beat = min(self.beat, HEARTBEAT)
        self._typical = 1.0  # seconds a handler takes, smoothed: the 409's Retry-After
        self._warned_identity = False

    # -- before the handler ------------------------------------------------------------------

    def screen(
        self,
        raw_keys: Sequence[str],
        request: Any,
        credential: str | None = None,
        cookies: str | None = None,
    ) -> Verdict | str:
        """First look at a request whose method is in ``methods``, before its body is read:
        a final verdict, or the name of the record to claim.

        ``raw_keys``: every ``Idempotency-Key`` field line; ``credential``: the value of
        ``caller_header``; ``cookies``: the ``Cookie`` field value (both ``None`` if absent).
        """
        if len(raw_keys) > 1:
            detail = "send one Idempotency-Key field line, not several"
            return _refusal(400, "Invalid Idempotency-Key", detail, "invalid_key")
        try:
            key = parse_key(raw_keys[0] if raw_keys else None)
        except ValueError as exc:
            return _refusal(400, "Invalid Idempotency-Key", str(exc), "invalid_key")
        if key is None:
            if self.required:
                detail = "requests here must carry an Idempotency-Key header"
                return _refusal(400, "Idempotency-Key required", detail, "key_required")
            return PASS
        if self.shared_keys:
            scope: str | None = ""
        elif self.key_scope is not None:
            scope = self.key_scope(request)
            if not isinstance(scope, str):
                if scope is not None:
                    return self._bad_scope(scope)
            elif not scope:  # "" is nobody, not one namespace shared by everybody
                scope = None
        else:
            cookie = cookie_value(cookies, self.caller_cookie) if self.caller_cookie else None
            scope = caller_scope(credential, cookie)
        if scope is None:
            return self._no_identity()
        return record_name(self.name, scope, key)

    def _no_identity(self) -> Verdict:
        said = self.caller_header or f"the {self.caller_cookie} cookie"
        if self.key_scope is not None:
            said = "what key_scope looks for"
        if not self._warned_identity:
            self._warned_identity = True
            _log.warning(
                "resilience: idempotency %r refuses keyed requests without a caller identity "
                "(%s) with 400; configure caller_header=, caller_cookie= or key_scope=, or "
                "shared_keys=True if all callers may share keys",
                self.name,
                said,
            )
        detail = f"keyed requests here must say who calls ({said})"
        return _refusal(400, "Caller identity required", detail, "no_caller_identity")

    def _bad_scope(self, scope: object) -> Verdict:
        """``key_scope`` returned neither a string nor ``None``: a bug in the application, so
        a 500 problem (nothing claimed, nothing run), logged with the type, never the value
        (it may be a credential)."""
        _log.error(
            "resilience: idempotency %r: key_scope returned an object of type %s, not a str "
            "or None; keyed requests are answered 500 until it is fixed",
            self.name,
            type(scope).__qualname__,
        )
        detail = "the server could not tell who calls (its key_scope is misconfigured)"
        return _refusal(500, "Caller identity unavailable", detail, "key_scope_invalid")

    def too_large(self) -> Verdict:
        detail = f"keyed request bodies are limited to {self.max_body} bytes"
        return _refusal(413, "Request body too large", detail, "body_too_large")

    def length_required(self) -> Verdict:
        detail = "a keyed request needs a Content-Length (this server cannot read to the end)"
        return _refusal(411, "Length required", detail, "length_required")

    def incomplete(self) -> Verdict:
        detail = "the request body ended before its Content-Length"
        return _refusal(400, "Incomplete request body", detail, "incomplete_body")

    def judge(self, claim: Claim) -> Verdict:
        """Turn the store's answer to a claim into what the shell does."""
        outcome = claim.outcome
        if outcome == "claimed":
            return Verdict(True, token=claim.token)
        if outcome == "replay":
            assert claim.response is not None
            self._announce(_events.IdempotentReplayed)
            stored = StoredResponse.decode(claim.response)
            headers = [*stored.headers, (REPLAYED_HEADER, b"true")]
            response = StoredResponse(stored.status, headers, stored.body)
            return Verdict(False, response=response, decision="replayed", detail="stored answer")
        if outcome in ("unavailable", "fenced"):
            if self.fail_open:
                return PASS  # the explicit choice: run unprotected, store nothing
            if outcome == "fenced":  # a restarted Redis, while running requests retake records
                detail = (
                    "the idempotency store restarted and cannot vouch for this key yet; "
                    "retry later with the same key"
                )
                wait = max(1, math.ceil(claim.retry_after or 1.0))
                decision = "store_fenced"
            else:
                detail = "the idempotency store is unavailable; retry later with the same key"
                wait, decision = 1, "store_unavailable"
            return _refusal(
                503,
                "Idempotency store unavailable",
                detail,
                decision,
                kind=REDUCED_CAPACITY,
                retry_after=wait,
            )
        if outcome == "in_progress":
            self._announce(_events.IdempotencyConflict)
            detail = "a request with this Idempotency-Key is still being processed; retry later"
            wait = min(max(1, math.ceil(self._typical)), max(1, math.ceil(self.lease)))
            return _refusal(409, "Request in progress", detail, "in_progress", retry_after=wait)
        self._announce(_events.IdempotencyMismatch)
        detail = "this Idempotency-Key was used with a different request payload"
        return _refusal(422, "Idempotency-Key reused", detail, "key_reused")

    # -- after the handler -------------------------------------------------------------------

    def keeps(self, status: int) -> bool:
        """Whether a response is stored for replay (else the claim is released)."""
        return kept(status)

    def answered(self, verdict: Verdict, method: str, path: str) -> StoredResponse:
        """The response of a verdict answered at once, logged on ``resilience.server``."""
        response = verdict.response
        assert response is not None
        _events.log_decision(
            verdict.decision, self.name, response.status, method, path, verdict.detail
        )
        return response

    def took(self, seconds: float) -> None:
        """Note how long a handler ran (smoothed; racy updates are harmless)."""
        self._typical += 0.2 * (seconds - self._typical)

    def unkept(self, status: int) -> bytes:
        """The record kept for a response too large (or streamed) to store: its retries learn
        that the request was processed, and that its answer cannot be replayed (410)."""
        detail = (
            f"the request with this Idempotency-Key was processed (status {status}); its "
            f"response was streamed or over {self.max_response} bytes, so it was not kept"
        )
        return problem(410, "Response not kept", detail).encode()

    def next_beat(self, outcome: str, since: float | None = None, now: float = 0.0) -> float | None:
        """Seconds until the heartbeat's next step after ``outcome`` (of a renewal, or of a
        completion retried because the store was down), or ``None`` to stop.

        Renewed: again in ``beat`` s. Store unavailable: again soon (``OUTAGE_RETRY``),
        so the claim is taken back as soon as the store returns (a restarted Redis comes back
        empty); a completion retried since ``since`` gives up ``lease`` s later. Lost: stop.
        """
        if outcome == "renewed":
            return self.beat
        if outcome == "unavailable":
            if since is not None and now - since >= self.lease:
                self.claim_lost("store-unavailable")
                return None
            return min(self.beat, OUTAGE_RETRY)
        if outcome == "lost":
            self.claim_lost("renew" if since is None else "complete")
        return None

    def claim_lost(self, why: str) -> None:
        """Log and emit that a completion (or renewal) found its claim gone: another request
        may have run the handler too (the lease ran out, or the store lost the record)."""
        _log.warning(
            "resilience: idempotency %r: a request's claim was lost (%s); its response was "
            "not stored, and another request with the same key may have run too",
            self.name,
            why,
        )
        if _events.listeners:
            _events.emit(_events.IdempotencyClaimLost(self.name, why))

    def _announce(self, kind: Callable[[str], _events.Event]) -> None:
        if _events.listeners:
            _events.emit(kind(self.name))


def _check_size(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an int >= 0, got {value!r}")
