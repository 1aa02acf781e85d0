"""Lua scripts run by SHA with one ``EVALSHA`` command, loading them on ``NOSCRIPT``.

redis-py's ``Script`` does the same but, per call, imports a module, copies the keys and
arguments into a new tuple and checks for pipelines: ~5 µs of a ~45 µs loopback decision. These
callables go straight to ``execute_command`` (which cluster clients route by the keys). The SHA
and the key count go as bytes: redis-py encodes every ``str`` or ``int`` argument on every call
(four type checks and an encode each), while bytes pass through after one check; callers that
send the same keys and arguments again keep theirs as bytes too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

__all__ = ["AsyncScript", "SyncScript"]


class _Counts(dict[int, bytes]):
    """``numkeys`` as bytes, made once per count (a shared breaker sends 2 + half_open_calls
    keys, so there is no fixed bound)."""

    def __missing__(self, count: int) -> bytes:
        encoded = self[count] = b"%d" % count
        return encoded


_COUNTS = _Counts()


class _Script:
    __slots__ = ("_command", "_load", "_noscript", "sha", "source")

    def __init__(self, client: Any, source: str) -> None:
        from redis.exceptions import NoScriptError  # redis is optional: imported by stores only

        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest().encode("ascii")
        self._command = client.execute_command
        self._load = client.script_load
        self._noscript = NoScriptError


class SyncScript(_Script):
    """``script(keys=[...], args=[...])`` on a synchronous client."""

    __slots__ = ()

    def __call__(self, *, keys: Sequence[str | bytes], args: Sequence[Any]) -> Any:
        try:
            return self._command("EVALSHA", self.sha, _COUNTS[len(keys)], *keys, *args)
        except self._noscript:  # first use, or the server lost its script cache
            self._load(self.source)
            return self._command("EVALSHA", self.sha, _COUNTS[len(keys)], *keys, *args)


class AsyncScript(_Script):
    """The same on a ``redis.asyncio`` client: calling it returns a coroutine."""

    __slots__ = ()

    async def __call__(self, *, keys: Sequence[str | bytes], args: Sequence[Any]) -> Any:
        try:
            return await self._command("EVALSHA", self.sha, _COUNTS[len(keys)], *keys, *args)
        except self._noscript:
            await self._load(self.source)
            return await self._command("EVALSHA", self.sha, _COUNTS[len(keys)], *keys, *args)
