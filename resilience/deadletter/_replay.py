"""replay / replay_async: send parked requests again with their original keys, and hand parked
calls to their registered handlers; settle each entry by what came back.

The rules are ``ReplayRun``'s (``resilience.deadletter._rules``); these two shells claim entries
from the store under a lease, send each one, and settle it. A replay goes through the client it
is given, with that client's breaker, budget and deadline: an open breaker stops the run
without touching the remaining entries. Requests are rebuilt by the client
(``client.build_request``), so its own credentials, cookies and default headers apply; the
entry's headers (its ``Idempotency-Key`` among them) win over the client's defaults.
An entry claimed but not yet sent when the run stops, raises or is cancelled is released at
once; the one in flight keeps its lease (its outcome is unknown) and is taken over later.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import socket
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from resilience import _events
from resilience._clock import SYSTEM_CLOCK, Clock
from resilience._validate import check_positive_int
from resilience.deadletter._events import (
    DeadLetterParked,
    DeadLetterReplayed,
    DeadLetterSucceeded,
)
from resilience.deadletter._letter import Depth, Entry, Unreadable
from resilience.deadletter._policy import handlers as registered_handlers
from resilience.deadletter._queue import REPLAY_EXTENSION, DeadLetterQueue
from resilience.deadletter._rules import (
    Action,
    ReplayRun,
    Step,
    StopReason,
    replay_error,
    replay_status,
)

__all__ = ["ReplaySummary", "replay", "replay_async"]

_log = logging.getLogger("resilience")
_RELEASE = Action("release")
_OUTCOMES = {"done": "succeeded", "retry": "failed", "park": "parked"}


@dataclass(frozen=True, slots=True)
class ReplaySummary:
    """What a replay run did: entries that succeeded (and left the queue), failed (to be
    replayed again), were parked for good, or were skipped (nothing here could replay them);
    ``elapsed`` seconds; why it ``stopped`` (``None`` while running: progress reports); the
    queue's ``depth`` when it ended (``None`` in progress reports)."""

    succeeded: int
    failed: int
    parked: int
    skipped: int
    elapsed: float
    stopped: StopReason | None
    depth: Depth | None = None


Progress = Callable[[ReplaySummary], object]


def replay(
    client: httpx.Client | None,
    queue: DeadLetterQueue,
    *,
    limit: int | None = None,
    max_time: float | None = None,
    stop_after_failures: int | None = 5,
    batch: int = 10,
    handlers: Mapping[str, Callable[..., Any]] | None = None,
    progress: Progress | None = None,
    clock: Clock | None = None,
) -> ReplaySummary:
    """Replay up to ``limit`` entries of ``queue`` for at most ``max_time`` seconds.

    HTTP entries go through ``client`` (skipped when it is ``None``); call entries to
    ``handlers[name]`` (default: the functions ``DeadLetter`` registered in this process;
    coroutine functions are skipped here, ``replay_async`` runs them). ``stop_after_failures``
    failed replays in a row end the run (``None``: never); ``batch`` entries are claimed at a
    time; ``progress`` is called after each entry. Each entry is visited at most once a run.
    """
    shell = _Shell(queue, limit, max_time, stop_after_failures, batch, handlers, clock)
    store = queue.store
    while (count := shell.wanted()) > 0:
        shell.claimed(*store.claim(shell.consumer, count, shell.cursor))
        try:
            while (entry := shell.next()) is not None:
                action = shell.settle(entry, _send(client, entry, shell.handlers))
                store.settle(entry, shell.consumer, action)
                shell.report(entry, action, progress)
        finally:  # stopped, raised or cancelled: what was not sent goes back at once
            for entry in shell.unsent():
                store.settle(entry, shell.consumer, _RELEASE)
    return shell.summary(store.depth())


async def replay_async(
    client: httpx.AsyncClient | None,
    queue: DeadLetterQueue,
    *,
    limit: int | None = None,
    max_time: float | None = None,
    stop_after_failures: int | None = 5,
    batch: int = 10,
    handlers: Mapping[str, Callable[..., Any]] | None = None,
    progress: Progress | None = None,
    clock: Clock | None = None,
) -> ReplaySummary:
    """``replay`` for an ``httpx.AsyncClient``; handlers may be coroutine functions."""
    shell = _Shell(queue, limit, max_time, stop_after_failures, batch, handlers, clock)
    store = queue.store
    while (count := shell.wanted()) > 0:
        shell.claimed(*await store.claim_async(shell.consumer, count, shell.cursor))
        try:
            while (entry := shell.next()) is not None:
                action = shell.settle(entry, await _send_async(client, entry, shell.handlers))
                await store.settle_async(entry, shell.consumer, action)
                shell.report(entry, action, progress)
        finally:
            for entry in shell.unsent():
                store.settle(entry, shell.consumer, _RELEASE)  # no await: cancellation-proof
    return shell.summary(await _depth_async(queue))


class _Shell:
    """What both shells share, sans-IO: the run, its walk over the store (the cursor, the
    claimed entries not sent yet), the consumer's name, the handlers, announcing."""

    def __init__(
        self,
        queue: DeadLetterQueue,
        limit: int | None,
        max_time: float | None,
        stop_after_failures: int | None,
        batch: int,
        handlers: Mapping[str, Callable[..., Any]] | None,
        clock: Clock | None,
    ) -> None:
        check_positive_int(batch, "batch")
        self.clock = clock or SYSTEM_CLOCK
        self.run = ReplayRun(
            started=self.clock.now(),
            limit=limit,
            max_time=max_time,
            stop_after_failures=stop_after_failures,
            max_replays=queue.max_replays,
        )
        self.name = queue.name
        self.batch = batch
        self.handlers = registered_handlers if handlers is None else handlers
        # Unique per run: a lease is held by this run, not by the host or the process.
        self.consumer = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"
        self.cursor: str | None = None
        self._waiting: deque[Entry] = deque()

    def wanted(self) -> int:
        """How many entries to claim next (0: the run is over)."""
        return min(self.batch, self.run.wanted(self.clock.now()))

    def claimed(self, entries: list[Entry], cursor: str | None) -> None:
        """What the store handed out, and where its walk goes on (``None``: at the end)."""
        self._waiting.extend(entries)
        self.cursor = cursor

    def next(self) -> Entry | None:
        """The next claimed entry to replay, or ``None`` (the batch is done, or the run)."""
        if self._waiting and self.run.wanted(self.clock.now()) > 0:
            return self._waiting.popleft()
        return None

    def unsent(self) -> list[Entry]:
        """The claimed entries the run will not send (to release); ends the run when the
        store's walk is over."""
        left = list(self._waiting)
        self._waiting.clear()
        if self.cursor is None:
            self.run.exhausted()
        return left

    def settle(self, entry: Entry, outcome: tuple[Step, str] | None) -> Action:
        """What to do with ``entry`` after its replay's ``outcome`` (``None``: not sent). An
        unreadable entry is parked (it can never be sent), one a newer version wrote is left."""
        letter = entry.letter
        if isinstance(letter, Unreadable):
            if letter.newer:
                return self.run.skip()
            _log.warning(
                "dead-letter queue %r: entry %s is unreadable (%s); parked",
                self.name,
                entry.id,
                letter.reason,
            )
            return self.run.unreadable(letter.reason)
        return self.run.skip() if outcome is None else self.run.settle(entry.replays, *outcome)

    def report(self, entry: Entry, action: Action, progress: Progress | None) -> None:
        outcome = _OUTCOMES.get(action.op)
        if outcome is not None and _events.listeners:
            if not isinstance(entry.letter, Unreadable):  # parked unsent: no replay
                _events.emit(DeadLetterReplayed(self.name, entry.id, outcome))
            if action.op == "done":
                _events.emit(DeadLetterSucceeded(self.name, entry.id))
            elif action.op == "park":
                _events.emit(DeadLetterParked(self.name, entry.id))
        if progress is not None:
            progress(self.summary(None))

    def summary(self, depth: Depth | None) -> ReplaySummary:
        run = self.run
        return ReplaySummary(
            run.succeeded,
            run.failed,
            run.parked,
            run.skipped,
            self.clock.now() - run.started,
            run.stopped if depth is not None else None,
            depth,
        )


def _work(
    entry: Entry,
    client: httpx.Client | httpx.AsyncClient | None,
    handlers: Mapping[str, Callable[..., Any]],
    *,
    coroutines: bool,
) -> tuple[Callable[[], Any], bool] | None:
    """What replaying ``entry`` takes, decided without I/O: the call to make (the handler with
    its arguments, or ``client.send`` of the rebuilt request) and whether it is HTTP; ``None``
    when nothing here can replay it (no handler, a coroutine handler and not ``coroutines``,
    no client, or an unreadable entry: the shell's settle decides about that one)."""
    letter = entry.letter
    if isinstance(letter, Unreadable):
        return None
    if letter.kind == "call":
        handler = handlers.get(letter.target)
        if handler is None or (inspect.iscoroutinefunction(handler) and not coroutines):
            return None
        args, kwargs = letter.arguments()
        return functools.partial(handler, *args, **kwargs), False
    if client is None:
        return None
    request = client.build_request(
        letter.method,
        letter.target,
        headers=list(letter.headers),
        content=letter.body,
        extensions={REPLAY_EXTENSION: entry.id},
    )
    return functools.partial(client.send, request), True


def _judged(result: object, http: bool) -> tuple[Step, str]:
    """What a replay's ``result`` means: a handler that returned is done; a response is judged
    by its status and ``Idempotent-Replayed``."""
    if not http or not isinstance(result, httpx.Response):
        return "done", "the handler returned"
    marker = result.headers.get("idempotent-replayed", "")
    return replay_status(result.status_code, marker.strip().lower() == "true")


def _send(
    client: httpx.Client | None, entry: Entry, handlers: Mapping[str, Callable[..., Any]]
) -> tuple[Step, str] | None:
    """Replay ``entry`` once: its step and a detail, or ``None`` when it cannot be replayed."""
    work = _work(entry, client, handlers, coroutines=False)
    if work is None:
        return None
    call, http = work
    try:
        result = call()  # a response is read whole, its connection released
    except Exception as exc:
        return replay_error(exc)
    return _judged(result, http)


async def _send_async(
    client: httpx.AsyncClient | None, entry: Entry, handlers: Mapping[str, Callable[..., Any]]
) -> tuple[Step, str] | None:
    work = _work(entry, client, handlers, coroutines=True)
    if work is None:
        return None
    call, http = work
    try:
        result = call()
        if inspect.isawaitable(result):
            result = await result
    except Exception as exc:
        return replay_error(exc)
    return _judged(result, http)


async def _depth_async(queue: DeadLetterQueue) -> Depth:
    import anyio.to_thread

    return await anyio.to_thread.run_sync(queue.store.depth)
