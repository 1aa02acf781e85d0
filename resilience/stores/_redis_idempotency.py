"""Idempotency records on Redis: the four steps of ``IdempotencyStore`` as one Lua script
(``idempotency.lua``), one round trip each, on Redis's clock (TTLs).

Functions of a ``RedisStore`` (its methods delegate here), so the store keeps one place for its
connection, its scripts and its outage bookkeeping. Record keys are the SHA-256 of the record
name, hash-tagged (``prefix{<sha>}:idem``): fixed length, whatever the client sent. Keys and
arguments go as bytes, each encoded once per call (the ops are constants): redis-py passes
bytes through, and type-checks and encodes every ``str`` or ``int`` (see ``_scripts``).

A Redis that restarted lost the records of requests still running (all of them if it came back
empty; those newer than its snapshot otherwise). For ``RESTART_FENCE`` seconds after the
server started, a claim of an absent record is answered "fenced" instead of claimed: the
heartbeats of running requests (every ``lease / 3`` s, at most ``HEARTBEAT`` s) take their
records back meanwhile, so a retry sent the moment Redis answers again is refused (503 with
``Retry-After``), not run a second time. Present records (replays, 409s) are answered as
always. The fence costs one ``INFO server`` inside the claim script of a new key (no round
trip).

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
    "HEARTBEAT",
    "RESTART_FENCE",
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
# Seconds a heartbeat waits at most between renewals of a running request's record
# (``Idempotency.beat`` is ``min(lease / 3, HEARTBEAT)``).
HEARTBEAT = 1.0
# Seconds after a Redis server starts during which it claims no absent record: three
# heartbeats, so a running request whose beat is late by two still takes its record back first.
RESTART_FENCE = 3 * HEARTBEAT
_FENCE = b"%d" % RESTART_FENCE
# What an outage's warning, event and metric name: never the record's key, which holds the
# caller's scope (derived from credentials) and the client's key (unbounded cardinality).
_NAME = "idempotency"


def _key(store: Any, record: str) -> list[bytes]:
    return [store.key(hashlib.sha256(record.encode()).hexdigest()[:32], "idem").encode()]


def _claim_args(fingerprint: str, lease: float) -> tuple[list[bytes], str]:
    token = os.urandom(16).hex()  # opaque: 128 random bits, no UUID formatting
    return [b"claim", fingerprint.encode(), _ms(lease), token.encode(), _FENCE], token


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
    if outcome == "fenced":
        return Claim("fenced", retry_after=float(reply[1]))
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
