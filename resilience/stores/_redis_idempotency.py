"""Idempotency records on Redis: the three steps of ``resilience._idempotency`` as one Lua
script (``idempotency.lua``), one round trip each, on Redis's clock (TTLs).

Functions of a ``RedisStore`` (its methods delegate here), so the store keeps one place for its
connection, its scripts and its outage bookkeeping. Record keys are the SHA-256 of the scoped
idempotency key, hash-tagged (``prefix{<sha>}:idem``): fixed length, whatever the client sent.
Keys and arguments go as bytes, each encoded once per call (the ops are constants): redis-py
passes bytes through, and type-checks and encodes every ``str`` or ``int`` (see ``_scripts``).
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from resilience._idempotency import Claim

__all__ = ["claim", "claim_async", "complete", "complete_async", "release", "release_async"]

_KIND = "idempotency middleware"
# What an outage's warning, event and metric name: never the record's key, which holds the
# caller's scope (derived from credentials) and the client's key (unbounded cardinality).
_NAME = "idempotency"


def _key(store: Any, key: str) -> list[bytes]:
    return [store.key(hashlib.sha256(key.encode()).hexdigest()[:32], "idem").encode()]


def _claim_args(fingerprint: str, lease: float) -> tuple[list[bytes], str]:
    token = os.urandom(16).hex()  # opaque: 128 random bits, no UUID formatting
    lease_ms = b"%d" % max(1, int(lease * 1000))
    return [b"claim", fingerprint.encode(), lease_ms, token.encode()], token


def _claim_of(store: Any, reply: Any, token: str) -> Claim:
    if reply is None:  # Redis unavailable: on_error decides
        return Claim("claimed") if store.on_error == "allow" else Claim("unavailable")
    outcome = reply[0].decode() if isinstance(reply[0], bytes) else reply[0]
    if outcome == "claimed":
        return Claim("claimed", token)
    if outcome == "replay":
        stored = reply[1]
        return Claim("replay", response=stored if isinstance(stored, bytes) else stored.encode())
    return Claim("mismatch") if outcome == "mismatch" else Claim("in_progress")


def claim(store: Any, key: str, fingerprint: str, lease: float) -> Claim:
    args, token = _claim_args(fingerprint, lease)
    reply = store.run(store.script("idempotency"), _key(store, key), args, _KIND, _NAME)
    return _claim_of(store, reply, token)


async def claim_async(store: Any, key: str, fingerprint: str, lease: float) -> Claim:
    args, token = _claim_args(fingerprint, lease)
    reply = await store.run_async(store.script("idempotency"), _key(store, key), args, _KIND, _NAME)
    return _claim_of(store, reply, token)


def _complete_args(token: str, response: bytes, ttl: float) -> list[bytes]:
    return [b"complete", token.encode(), response, b"%d" % max(1, int(ttl * 1000))]


def complete(store: Any, key: str, token: str, response: bytes, ttl: float) -> bool:
    args = _complete_args(token, response, ttl)
    return bool(store.run(store.script("idempotency"), _key(store, key), args, _KIND, _NAME))


async def complete_async(store: Any, key: str, token: str, response: bytes, ttl: float) -> bool:
    args = _complete_args(token, response, ttl)
    script = store.script("idempotency")
    return bool(await store.run_async(script, _key(store, key), args, _KIND, _NAME))


def release(store: Any, key: str, token: str) -> None:
    args = [b"release", token.encode()]
    store.run(store.script("idempotency"), _key(store, key), args, _KIND, _NAME)


async def release_async(store: Any, key: str, token: str) -> None:
    script = store.script("idempotency")
    await store.run_async(script, _key(store, key), [b"release", token.encode()], _KIND, _NAME)
