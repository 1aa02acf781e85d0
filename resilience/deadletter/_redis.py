"""RedisStreamStore: dead letters shared by a fleet, on a Redis Stream with a consumer group.

Keys (one hash tag per queue, so a cluster keeps them in one slot), under ``prefix``:

- ``dl:{name}:stream``: one stream entry per dead letter; its id is the entry's id. The group
  ``replayers`` hands entries out (``XREADGROUP``); each stays in the group's pending list,
  owned by its replayer, until settled. An entry its replayer has held longer than the
  claiming replayer's ``lease`` (the holder died) is taken over with ``XAUTOCLAIM``.
- ``dl:{name}:data`` (hash): id -> the entry's JSON (the letter and why it was parked);
  ``dl:{name}:state`` (hash): id -> "replays|state|last error";
  ``dl:{name}:keys`` (hash): Idempotency-Key -> id, so a key is queued once;
  ``dl:{name}:parked`` (set): the ids given up on (taken off the stream, kept for inspection).

Entries are read back by ``stream_entry`` (``_letter``): a damaged one is an unreadable entry,
not an error, and the Lua steps never depend on being able to decode it (a key whose entry is
gone or unreadable is queued again; dropping never needs the JSON).

Every change is one Lua step, so a crash never leaves half an entry. A failed replay puts its
entry back by setting its idle time past any lease (``XCLAIM ... IDLE``): the next run's
``XAUTOCLAIM`` sees it at once, this run's cursor has moved past it. Needs Redis >= 6.2 and a
synchronous client (``redis.Redis`` or a cluster client); the async twins run it in a thread.
"""

from __future__ import annotations

import inspect
import re
import time
from typing import Any, Final

from resilience._validate import check_duration
from resilience.deadletter._letter import (
    Depth,
    Entry,
    Letter,
    State,
    stream_entry,
    stream_record,
)
from resilience.deadletter._rules import Action
from resilience.deadletter._store import ThreadedAsync

__all__ = ["RedisStreamStore"]

GROUP: Final = "replayers"
_ID: Final = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")
_RELEASED_IDLE_MS: Final = b"%d" % (10 * 365 * 86_400_000)  # ten years: past any lease

# KEYS: stream, data, keys. ARGV: entry JSON, key ('' for none), group. -> {id, added}
# A key whose entry is gone (its data dropped by hand) is queued again.
_ADD: Final = """
if ARGV[2] ~= '' then
  local existing = redis.call('HGET', KEYS[3], ARGV[2])
  if existing and redis.call('HEXISTS', KEYS[2], existing) == 1 then return {existing, 0} end
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('XGROUP', 'CREATE', KEYS[1], ARGV[3], '0', 'MKSTREAM')
end
local id = redis.call('XADD', KEYS[1], '*', 'e', '1')
redis.call('HSET', KEYS[2], id, ARGV[1])
if ARGV[2] ~= '' then redis.call('HSET', KEYS[3], ARGV[2], id) end
return {id, 1}
"""

# KEYS: stream, data, state, keys, parked. ARGV: id, group. -> 1 if it was there
# An entry whose JSON cannot be decoded is dropped all the same; its key, if it had one,
# stays mapped to an id with no data, which _ADD treats as free.
_DROP: Final = """
local raw = redis.call('HGET', KEYS[2], ARGV[1])
redis.call('XACK', KEYS[1], ARGV[2], ARGV[1])
local found = redis.call('XDEL', KEYS[1], ARGV[1]) + redis.call('SREM', KEYS[5], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
if not raw then return found > 0 and 1 or 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
local decoded, entry = pcall(cjson.decode, raw)
local letter = decoded and type(entry) == 'table' and entry['letter']
local key = type(letter) == 'table' and letter['key']
if type(key) == 'string' and redis.call('HGET', KEYS[4], key) == ARGV[1] then
  redis.call('HDEL', KEYS[4], key)
end
return 1
"""

# KEYS: stream, state, parked. ARGV: id, group, consumer, op, new state value, idle ms.
# Applies only while ``consumer`` holds the entry. -> 1 if applied
_SETTLE: Final = """
local pending = redis.call('XPENDING', KEYS[1], ARGV[2], ARGV[1], ARGV[1], 1)
if #pending == 0 or pending[1][2] ~= ARGV[3] then return 0 end
if ARGV[4] ~= 'release' then redis.call('HSET', KEYS[2], ARGV[1], ARGV[5]) end
if ARGV[4] == 'park' then
  redis.call('XACK', KEYS[1], ARGV[2], ARGV[1])
  redis.call('XDEL', KEYS[1], ARGV[1])
  redis.call('SADD', KEYS[3], ARGV[1])
else
  redis.call('XCLAIM', KEYS[1], ARGV[2], ARGV[3], 0, ARGV[1], 'IDLE', ARGV[6], 'JUSTID')
end
return 1
"""


class RedisStreamStore(ThreadedAsync):
    """Dead letters of the queue ``name`` on Redis (a synchronous ``redis.Redis`` or cluster
    client). ``lease``: seconds a replayer may hold an entry before another takes it over.
    Bound each call with the client's ``socket_timeout`` (and ``socket_connect_timeout``): a
    client that would retry failed commands (redis-py >= 6 does by default) is replaced by a
    twin that tries each once, as ``RedisStore`` does, so parking a call never waits seconds
    for a Redis that is down; ``close()`` closes the twin.
    """

    def __init__(
        self,
        client: Any,
        *,
        name: str = "default",
        prefix: str = "resilience:",
        lease: float = 60.0,
    ) -> None:
        if not isinstance(name, str) or not name or any(c in name for c in "{}"):
            raise ValueError(f"name must be a non-empty string without braces, got {name!r}")
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a string, got {prefix!r}")
        check_duration(lease, "lease")
        if not hasattr(client, "register_script"):
            raise TypeError(f"client must be a redis-py client, got {client!r}")
        if inspect.iscoroutinefunction(getattr(client, "execute_command", None)):
            raise TypeError(
                "client must be a synchronous redis client (redis.Redis): the async steps run "
                "it in a worker thread"
            )
        from resilience.stores._redis_client import tried_once
        from resilience.stores._scripts import SyncScript  # redis is imported by stores only

        client, self._owned = tried_once(client, False)
        self._client = client
        self.name = name
        self.prefix = prefix
        self.lease = float(lease)
        base = f"{prefix}dl:{{{name}}}:"
        self.stream, self.data, self.state = base + "stream", base + "data", base + "state"
        self.keys, self.parked = base + "keys", base + "parked"
        self._add = SyncScript(client, _ADD)
        self._drop = SyncScript(client, _DROP)
        self._settle = SyncScript(client, _SETTLE)

    @classmethod
    def from_url(cls, url: str, *, socket_timeout: float = 5.0, **options: Any) -> RedisStreamStore:
        """A store on a new ``redis.Redis`` client for ``url`` (``redis://host:port/db``),
        each call bounded by ``socket_timeout`` seconds; ``options`` go to the store."""
        import redis

        client = redis.Redis.from_url(
            url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout
        )
        store = cls(client, **options)
        if store._client is not client:  # the store made a twin that tries once: ours is spare
            client.close()
        store._owned = True
        return store

    def __repr__(self) -> str:
        return f"RedisStreamStore({self._client!r}, name={self.name!r}, lease={self.lease!r})"

    def close(self) -> None:
        """Close the client if the store made it (``from_url``, or a twin that tries each
        command once); a client you gave stays yours."""
        if self._owned:
            self._client.close()

    def add(self, letter: Letter, *, why: str, reason: str, attempts: int = 0) -> str:
        record = stream_record(
            letter, why=why, reason=reason, created=time.time(), attempts=attempts
        )
        added = self._add(
            keys=[self.stream, self.data, self.keys], args=[record, letter.key or "", GROUP]
        )
        return _text(added[0])

    def get(self, entry_id: str) -> Entry | None:
        if not _is_id(entry_id):
            return None
        raw = self._client.hget(self.data, entry_id)
        if raw is None and not self._listed(entry_id):
            return None
        return stream_entry(entry_id, raw, self._client.hget(self.state, entry_id))

    def entries(self, *, state: State | None = None, limit: int = 100) -> list[Entry]:
        ids: list[str] = []
        if state != "parked":
            ids += [_text(i) for i, _ in self._client.xrange(self.stream, count=limit)]
        if state != "ready":
            parked = sorted((_text(i) for i in self._client.smembers(self.parked)), key=_order)
            ids += parked[: max(0, limit - len(ids))]
        return self._load(ids)

    def depth(self) -> Depth:
        return Depth(int(self._client.xlen(self.stream)), int(self._client.scard(self.parked)))

    def claim(
        self, consumer: str, count: int, cursor: str | None
    ) -> tuple[list[Entry], str | None]:
        if cursor is None or cursor.startswith("p:"):  # first: entries their holder left
            start = "0-0" if cursor is None else cursor[2:]
            reply = self._group_call(
                "XAUTOCLAIM",
                self.stream,
                GROUP,
                consumer,
                int(self.lease * 1000),
                start,
                "COUNT",
                count,
            )  # fmt: skip  (not JUSTID: redis-py then drops the cursor from the reply)
            if reply is None:
                return [], None  # no stream yet: nothing was ever parked
            following, ids = _text(reply[0]), [_text(i) for i, _ in reply[1]]
            after = "n" if following == "0-0" else "p:" + following
            entries = self._load(ids)
            if not entries and after == "n":
                return self.claim(consumer, count, after)  # the pending list is done: new ones
            return entries, after
        reply = self._group_call(
            "XREADGROUP", "GROUP", GROUP, consumer, "COUNT", count, "STREAMS", self.stream, ">"
        )
        ids = [_text(i) for _, items in (reply or []) for i, _ in items]
        if not ids:
            return [], None
        return self._load(ids), "n"

    def settle(self, entry: Entry, consumer: str, action: Action) -> bool:
        op = action.op
        if op == "done":
            return self.drop(entry.id)
        replays = entry.replays + (op != "release")
        state = "parked" if op == "park" else "ready"
        applied = self._settle(
            keys=[self.stream, self.state, self.parked],
            args=[entry.id, GROUP, consumer, op, f"{replays}|{state}|{action.error}",
                  _RELEASED_IDLE_MS],
        )  # fmt: skip
        return bool(applied)

    def drop(self, entry_id: str) -> bool:
        if not _is_id(entry_id):
            return False
        dropped = self._drop(
            keys=[self.stream, self.data, self.state, self.keys, self.parked],
            args=[entry_id, GROUP],
        )
        return bool(dropped)

    def _group_call(self, *command: Any) -> Any:
        """Run a consumer-group command; create the group when Redis lost it (a restart
        without persistence) and the stream holds nothing yet."""
        from redis.exceptions import ResponseError

        try:
            return self._client.execute_command(*command)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
        try:
            self._client.execute_command("XGROUP", "CREATE", self.stream, GROUP, "0", "MKSTREAM")
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        return self._client.execute_command(*command)

    def _load(self, ids: list[str]) -> list[Entry]:
        if not ids:
            return []
        data = self._client.hmget(self.data, ids)
        states = self._client.hmget(self.state, ids)
        # An id without data (removed by hand, or dropped a moment ago) is unreadable: a
        # replay parks it (a no-op if it was dropped), drop removes what is left of it.
        return [
            stream_entry(entry_id, raw, state)
            for entry_id, raw, state in zip(ids, data, states, strict=True)
        ]

    def _listed(self, entry_id: str) -> bool:
        """Whether ``entry_id`` is on the stream or parked (an entry whose data is gone)."""
        if self._client.sismember(self.parked, entry_id):
            return True
        return bool(self._client.xrange(self.stream, entry_id, entry_id, count=1))


def _is_id(entry_id: str) -> bool:
    """Whether ``entry_id`` has the shape of a stream id (anything else is no entry)."""
    return _ID.fullmatch(entry_id) is not None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _order(entry_id: str) -> tuple[int, int]:
    millis, _, sequence = entry_id.partition("-")
    return int(millis), int(sequence or 0)
