"""Idempotency records on Redis: the four steps of ``IdempotencyStore`` as one Lua script
(``idempotency.lua``), one round trip each, on Redis's clock (TTLs).

Functions of a ``RedisStore`` (its methods delegate here), so the store keeps one place for its
connection, its scripts and its outage bookkeeping. Record keys are the SHA-256 of the record
name, hash-tagged (``prefix{<sha>}:idem``): fixed length, whatever the client sent. Keys and
arguments go as bytes, each encoded once per call (the ops are constants): redis-py passes
bytes through, and type-checks and encodes every ``str`` or ``int`` (see ``_scripts``).

An outage is reported as it is ("unavailable"), whatever the store's ``on_error``: that
setting is for rate limits and breakers; the idempotency policy decides for itself (by
default it refuses keyed requests while it cannot keep its promise). Outage events and
warnings name the kind of policy ("idempotency"), never a record: names come from clients.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from resilience.stores._protocols import Claim, Completion, Renewal

__all__ = [
    "claim",
    "claim_async",
    "complete",
    "complete_async",
    "release",
    "release_async",
    "renew",
    "renew_async",
]

_KIND = "idempotency middleware"
# What an outage's warning, event and metric name: never the record's key, which holds the
# caller's scope (derived from credentials) and the client's key (unbounded cardinality).
_NAME = "idempotency"


def _key(store: Any, record: str) -> list[bytes]:
    return [store.key(hashlib.sha256(record.encode()).hexdigest()[:32], "idem").encode()]


def _claim_args(fingerprint: str, lease: float) -> tuple[list[bytes], str]:
    token = os.urandom(16).hex()  # opaque: 128 random bits, no UUID formatting
    return [b"claim", fingerprint.encode(), _ms(lease), token.encode()], token


def _ms(seconds: float) -> bytes:
    return b"%d" % max(1, int(seconds * 1000))


def _claim_of(reply: Any, token: str) -> Claim:
    if reply is None:
        return Claim("unavailable")
    outcome = reply[0].decode() if isinstance(reply[0], bytes) else reply[0]
    if outcome == "claimed":
        return Claim("claimed", token)
    if outcome == "replay":
        stored = reply[1]
        return Claim("replay", response=stored if isinstance(stored, bytes) else stored.encode())
    return Claim("mismatch") if outcome == "mismatch" else Claim("in_progress")


def claim(store: Any, record: str, fingerprint: str, lease: float) -> Claim:
    args, token = _claim_args(fingerprint, lease)
    reply = store.run(store.script("idempotency"), _key(store, record), args, _KIND, _NAME)
    return _claim_of(reply, token)


async def claim_async(store: Any, record: str, fingerprint: str, lease: float) -> Claim:
    args, token = _claim_args(fingerprint, lease)
    script = store.script("idempotency")
    return _claim_of(await store.run_async(script, _key(store, record), args, _KIND, _NAME), token)


def _renew_args(fingerprint: str, token: str, lease: float) -> list[bytes]:
    return [b"renew", fingerprint.encode(), token.encode(), _ms(lease)]


def _renewal(reply: Any) -> Renewal:
    return "unavailable" if reply is None else "renewed" if reply else "lost"


def renew(store: Any, record: str, fingerprint: str, token: str, lease: float) -> Renewal:
    args = _renew_args(fingerprint, token, lease)
    return _renewal(store.run(store.script("idempotency"), _key(store, record), args, _KIND, _NAME))


async def renew_async(
    store: Any, record: str, fingerprint: str, token: str, lease: float
) -> Renewal:
    args = _renew_args(fingerprint, token, lease)
    script = store.script("idempotency")
    return _renewal(await store.run_async(script, _key(store, record), args, _KIND, _NAME))


def _complete_args(fingerprint: str, token: str, response: bytes, ttl: float) -> list[bytes]:
    return [b"complete", fingerprint.encode(), token.encode(), response, _ms(ttl)]


def _completion(reply: Any) -> Completion:
    return "unavailable" if reply is None else "stored" if reply else "lost"


def complete(
    store: Any, record: str, fingerprint: str, token: str, response: bytes, ttl: float
) -> Completion:
    args = _complete_args(fingerprint, token, response, ttl)
    script = store.script("idempotency")
    return _completion(store.run(script, _key(store, record), args, _KIND, _NAME))


async def complete_async(
    store: Any, record: str, fingerprint: str, token: str, response: bytes, ttl: float
) -> Completion:
    args = _complete_args(fingerprint, token, response, ttl)
    script = store.script("idempotency")
    return _completion(await store.run_async(script, _key(store, record), args, _KIND, _NAME))


def release(store: Any, record: str, token: str) -> None:
    args = [b"release", token.encode()]
    store.run(store.script("idempotency"), _key(store, record), args, _KIND, _NAME)


async def release_async(store: Any, record: str, token: str) -> None:
    script = store.script("idempotency")
    await store.run_async(script, _key(store, record), [b"release", token.encode()], _KIND, _NAME)
