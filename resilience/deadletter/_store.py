"""The seam between a dead-letter queue and where it keeps its entries.

A store keeps entries durably and hands them to replayers under a lease: ``claim`` gives a
replayer (``consumer``) up to ``count`` ready entries that nobody holds, or whose holder has
kept them longer than the store's ``lease`` (it died); ``settle`` then finishes, retries, parks
or releases each one. ``claim`` walks the queue with a ``cursor`` (``None`` to start; ``None``
back when the walk is over), so one run visits each entry at most once, however many fail.

The async twins of the steps that the transports and the replay shells call run the sync step
in a worker thread (``anyio``, so asyncio and trio both work): SQLite and a synchronous Redis
client block, and a dead letter is written where the event loop would otherwise stall.
"""

from __future__ import annotations

import functools
from typing import Protocol, runtime_checkable

import anyio.to_thread

from resilience.deadletter._letter import Depth, Entry, Letter, State
from resilience.deadletter._rules import Action

__all__ = ["AsyncDeadLetterStore", "DeadLetterStore", "Store", "ThreadedAsync"]


@runtime_checkable
class DeadLetterStore(Protocol):
    """The steps of a dead-letter store (sync): what ``DeadLetterQueue``, ``replay`` and the
    command line need.

    ``add`` returns the entry's id; a letter whose key is already in the queue (ready or
    parked) is not added twice: the id of the entry holding it comes back. ``settle`` applies
    ``action`` only while ``consumer`` still holds the entry (a ``done`` always applies: the
    work is finished whoever sent it); it returns whether it did.
    """

    name: str

    def add(self, letter: Letter, *, why: str, reason: str, attempts: int = 0) -> str: ...

    def get(self, entry_id: str) -> Entry | None: ...

    def entries(self, *, state: State | None = None, limit: int = 100) -> list[Entry]: ...

    def depth(self) -> Depth: ...

    def claim(
        self, consumer: str, count: int, cursor: str | None
    ) -> tuple[list[Entry], str | None]: ...

    def settle(self, entry: Entry, consumer: str, action: Action) -> bool: ...

    def drop(self, entry_id: str) -> bool: ...

    def close(self) -> None: ...


@runtime_checkable
class AsyncDeadLetterStore(Protocol):
    """The steps async transports and ``replay_async`` call, for coroutines."""

    async def add_async(
        self, letter: Letter, *, why: str, reason: str, attempts: int = 0
    ) -> str: ...

    async def claim_async(
        self, consumer: str, count: int, cursor: str | None
    ) -> tuple[list[Entry], str | None]: ...

    async def settle_async(self, entry: Entry, consumer: str, action: Action) -> bool: ...


class Store(DeadLetterStore, AsyncDeadLetterStore, Protocol):
    """Both: what a ``DeadLetterQueue`` holds."""


class ThreadedAsync:
    """The async twins, each running its sync step in a worker thread."""

    def add(self, letter: Letter, *, why: str, reason: str, attempts: int = 0) -> str:
        raise NotImplementedError

    def claim(
        self, consumer: str, count: int, cursor: str | None
    ) -> tuple[list[Entry], str | None]:
        raise NotImplementedError

    def settle(self, entry: Entry, consumer: str, action: Action) -> bool:
        raise NotImplementedError

    async def add_async(self, letter: Letter, *, why: str, reason: str, attempts: int = 0) -> str:
        step = functools.partial(self.add, letter, why=why, reason=reason, attempts=attempts)
        return await anyio.to_thread.run_sync(step)

    async def claim_async(
        self, consumer: str, count: int, cursor: str | None
    ) -> tuple[list[Entry], str | None]:
        return await anyio.to_thread.run_sync(self.claim, consumer, count, cursor)

    async def settle_async(self, entry: Entry, consumer: str, action: Action) -> bool:
        return await anyio.to_thread.run_sync(self.settle, entry, consumer, action)
