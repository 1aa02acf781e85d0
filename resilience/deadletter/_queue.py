"""DeadLetterQueue: what the transports and the ``DeadLetter`` policy call when a keyed call
ends without an answer, and what operators and replayers read.

Parking never changes what the caller gets: the same response (with the entry's id in
``response.extensions["resilience.dead_letter"]``) or the same exception (with a PEP 678 note
naming the entry). A store that fails is logged once per outage and noted on the error; it never
raises into the call.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Iterable
from typing import Any, Final

import httpx

from resilience import _events
from resilience._errors import add_note
from resilience._validate import check_positive_int
from resilience.deadletter._events import DeadLetterRecorded
from resilience.deadletter._letter import (
    Depth,
    Entry,
    Letter,
    State,
    call_letter,
    request_letter,
    secret_names,
)
from resilience.deadletter._rules import NEVER_SENT, dead_error, dead_status
from resilience.deadletter._store import AsyncDeadLetterStore, DeadLetterStore, Store

__all__ = ["ENTRY_EXTENSION", "REPLAY_EXTENSION", "DeadLetterQueue", "parked_entry", "queues"]

# The response extension naming the entry a response was parked as.
ENTRY_EXTENSION: Final = "resilience.dead_letter"
# Set on the requests a replay sends: the replay settles their entry, nothing parks them again.
REPLAY_EXTENSION: Final = "resilience.dead_letter.replay"

_log = logging.getLogger("resilience")
_PARKED: Final = "_resilience_dead_letter"


def parked_entry(outcome: object) -> str | None:
    """The id of the dead-letter entry a call's outcome was parked as: read from a response's
    ``extensions`` or from the exception the caller got; ``None`` when it was not parked."""
    if isinstance(outcome, httpx.Response):
        found = outcome.extensions.get(ENTRY_EXTENSION)
    else:
        found = getattr(outcome, "__dict__", {}).get(_PARKED)
    return found if isinstance(found, str) else None


# Every live queue, for the depth gauge (read at collection time, never on the hot path).
queues: weakref.WeakSet[DeadLetterQueue] = weakref.WeakSet()


class DeadLetterQueue:
    """Park keyed calls that ended without an answer, in ``store``, for a later replay.

    ``store``: a ``SQLiteStore`` (default: one at ``default_path()``) or a
    ``RedisStreamStore``. ``secret_headers``: header names not kept, besides
    ``Authorization``, ``Cookie`` and ``Proxy-Authorization`` (never kept). ``max_body``:
    bytes; a larger body is not parked (the note says so). ``max_replays``: failed replays
    after which an entry is parked for good (it stays inspectable).
    """

    def __init__(
        self,
        store: Store | None = None,
        *,
        secret_headers: Iterable[str] = (),
        max_body: int = 1 << 20,
        max_replays: int = 5,
    ) -> None:
        check_positive_int(max_body, "max_body", minimum=0)
        check_positive_int(max_replays, "max_replays")
        if store is None:
            from resilience.deadletter._sqlite import SQLiteStore

            store = SQLiteStore()
        elif not isinstance(store, (DeadLetterStore)) or not isinstance(
            store, AsyncDeadLetterStore
        ):
            raise TypeError(f"store must be a dead-letter store (sync and async), got {store!r}")
        self.store: Store = store
        self.name = store.name
        self.secrets = secret_names(secret_headers)
        self.max_body = max_body
        self.max_replays = max_replays
        self._down = False
        self._lock = threading.Lock()
        queues.add(self)

    def __repr__(self) -> str:
        return f"DeadLetterQueue({self.store!r}, max_replays={self.max_replays!r})"

    # -- what the transports call -------------------------------------------------------------

    def park_response(
        self, request: httpx.Request, response: httpx.Response, *, honours_keys: bool = True
    ) -> str | None:
        """Park ``request`` if its final ``response`` is no answer; return the entry's id."""
        screened = self._screen(request, dead_status(response.status_code), honours_keys, None)
        return None if screened is None else _named(response, self._add(*screened, None))

    def park_error(
        self, request: httpx.Request, exc: BaseException, *, honours_keys: bool = True
    ) -> str | None:
        """Park ``request`` if ``exc`` leaves its outcome open; note it on ``exc``."""
        screened = self._screen(request, dead_error(exc), honours_keys, exc)
        return None if screened is None else self._add(*screened, exc)

    async def park_response_async(
        self, request: httpx.Request, response: httpx.Response, *, honours_keys: bool = True
    ) -> str | None:
        """``park_response`` for async transports (the store step runs in a worker thread)."""
        screened = self._screen(request, dead_status(response.status_code), honours_keys, None)
        return None if screened is None else _named(response, await self._add_async(*screened))

    async def park_error_async(
        self, request: httpx.Request, exc: BaseException, *, honours_keys: bool = True
    ) -> str | None:
        """``park_error`` for async transports (the store step runs in a worker thread)."""
        screened = self._screen(request, dead_error(exc), honours_keys, exc)
        return None if screened is None else await self._add_async(*screened, exc)

    # -- what the DeadLetter policy calls -----------------------------------------------------

    def park_call(
        self,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        key: str | None,
        exc: BaseException,
    ) -> str | None:
        """Park a failed call of the handler ``name``; note it on ``exc``."""
        screened = self._screen_call(name, args, kwargs, key, exc)
        return screened if screened is None else self._add(*screened, exc)

    async def park_call_async(
        self,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        key: str | None,
        exc: BaseException,
    ) -> str | None:
        """``park_call`` for coroutine functions (the store step runs in a worker thread)."""
        screened = self._screen_call(name, args, kwargs, key, exc)
        return screened if screened is None else await self._add_async(*screened, exc)

    # -- what operators read ------------------------------------------------------------------

    def depth(self) -> Depth:
        """Entries waiting for a replay, and entries parked for good."""
        return self.store.depth()

    def entries(self, *, state: State | None = None, limit: int = 100) -> list[Entry]:
        """Up to ``limit`` entries, oldest first (``state``: only "ready" or "parked" ones)."""
        return self.store.entries(state=state, limit=limit)

    def get(self, entry_id: str) -> Entry | None:
        """The entry ``entry_id``, or ``None`` when there is none."""
        return self.store.get(entry_id)

    def drop(self, entry_id: str) -> bool:
        """Forget the entry ``entry_id``; whether there was one."""
        return self.store.drop(entry_id)

    def close(self) -> None:
        """Close the store."""
        self.store.close()

    # -- the steps, written once --------------------------------------------------------------

    def _screen(
        self,
        request: httpx.Request,
        verdict: tuple[str, str] | None,
        honours_keys: bool,
        exc: BaseException | None,
    ) -> tuple[Letter, str, str] | None:
        """What to park (letter, why, reason), or ``None``; a call that should be parked but
        cannot be (its body) gets a note saying why, when there is an error to carry it."""
        if verdict is None or "idempotency-key" not in request.headers:
            return None
        if REPLAY_EXTENSION in request.extensions:
            return None  # a replay: its entry is settled by the replay
        why, reason = verdict
        if not honours_keys and why not in NEVER_SENT:
            return None  # it may have been acted on, and a replay could act again
        letter = request_letter(request, self.secrets, self.max_body)
        if isinstance(letter, str):
            if exc is not None:
                self._not_parked(exc, letter)
            return None
        return letter, why, reason

    def _screen_call(
        self,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        key: str | None,
        exc: BaseException,
    ) -> tuple[Letter, str, str] | None:
        letter = call_letter(name, args, kwargs, key)
        if isinstance(letter, str):
            self._not_parked(exc, letter)
            return None
        return letter, "failed", type(exc).__name__

    def _not_parked(self, exc: BaseException, why: str) -> None:
        add_note(exc, f"resilience: not parked in dead-letter queue {self.name!r}: {why}")

    def _add(self, letter: Letter, why: str, reason: str, exc: BaseException | None) -> str | None:
        try:
            entry_id = self.store.add(letter, why=why, reason=reason)
        except Exception as failure:
            self._failed(failure, exc)
            return None
        self._added(entry_id, why, exc)
        return entry_id

    async def _add_async(
        self, letter: Letter, why: str, reason: str, exc: BaseException | None = None
    ) -> str | None:
        try:
            entry_id = await self.store.add_async(letter, why=why, reason=reason)
        except Exception as failure:
            self._failed(failure, exc)
            return None
        self._added(entry_id, why, exc)
        return entry_id

    def _added(self, entry_id: str, why: str, exc: BaseException | None) -> None:
        with self._lock:
            was_down, self._down = self._down, False
        if was_down:
            _log.warning("dead-letter queue %r: its store answers again", self.name)
        if exc is not None:
            add_note(
                exc,
                f"resilience: parked in dead-letter queue {self.name!r} as entry {entry_id} "
                f"({why}); resilience.deadletter.replay sends it again with the same key",
            )
            try:
                exc.__dict__[_PARKED] = entry_id  # for parked_entry(); the note is for people
            except AttributeError:  # an exception class with __slots__: the note says it
                pass
        if _events.listeners:
            _events.emit(DeadLetterRecorded(self.name, entry_id, why))

    def _failed(self, failure: Exception, exc: BaseException | None) -> None:
        with self._lock:
            first, self._down = not self._down, True
        if first:  # once per outage, not per call; the class only (messages may hold data)
            _log.warning(
                "dead-letter queue %r: its store failed (%s); calls are not parked until it "
                "answers again",
                self.name,
                type(failure).__name__,
            )
        if exc is not None:
            self._not_parked(exc, f"its store failed ({type(failure).__name__})")


def _named(response: httpx.Response, entry_id: str | None) -> str | None:
    """Name the entry on the response the caller gets (``parked_entry`` reads it)."""
    if entry_id is not None:
        response.extensions[ENTRY_EXTENSION] = entry_id
    return entry_id
