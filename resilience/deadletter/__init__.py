"""Dead letters: keyed calls that ended without an answer, kept and finished later, once.

When a call with an ``Idempotency-Key`` runs out of attempts, budget or deadline, meets an open
breaker, a 409 "still running" or a lost response, a ``DeadLetterQueue`` keeps the request (no
credentials) in a durable store: ``SQLiteStore`` (one file, the default) or
``RedisStreamStore`` (a fleet of replayers sharing the work). ``replay`` / ``replay_async``
send the entries again later with their original keys, so a server that honours the key
answers a replay of work it already did from its record instead of doing it twice. The
``DeadLetter`` policy does the same for decorated functions.

    queue = DeadLetterQueue(SQLiteStore("dead-letters.sqlite3"))
    ...
    summary = replay(client, queue, max_time=60)

Command line: ``python -m resilience.deadletter list | show ID | replay | drop ID``.
"""

from resilience._public import publish as _publish
from resilience.deadletter._events import (
    DeadLetterParked,
    DeadLetterRecorded,
    DeadLetterReplayed,
    DeadLetterSucceeded,
)
from resilience.deadletter._letter import CREDENTIAL_HEADERS, Depth, Entry, Letter, Unreadable
from resilience.deadletter._policy import DeadLetter, register
from resilience.deadletter._queue import (
    ENTRY_EXTENSION,
    REPLAY_EXTENSION,
    DeadLetterQueue,
    parked_entry,
)
from resilience.deadletter._redis import RedisStreamStore
from resilience.deadletter._replay import ReplaySummary, replay, replay_async
from resilience.deadletter._sqlite import SQLiteStore, default_path
from resilience.deadletter._store import AsyncDeadLetterStore, DeadLetterStore

__all__ = [
    "AsyncDeadLetterStore",
    "CREDENTIAL_HEADERS",
    "DeadLetter",
    "DeadLetterParked",
    "DeadLetterQueue",
    "DeadLetterRecorded",
    "DeadLetterReplayed",
    "DeadLetterStore",
    "DeadLetterSucceeded",
    "Depth",
    "ENTRY_EXTENSION",
    "Entry",
    "Letter",
    "REPLAY_EXTENSION",
    "RedisStreamStore",
    "ReplaySummary",
    "SQLiteStore",
    "Unreadable",
    "default_path",
    "parked_entry",
    "register",
    "replay",
    "replay_async",
]

_publish(__name__, globals(), __all__)
