"""SQLiteStore: dead letters in one SQLite file (stdlib ``sqlite3``), the embedded default.

Several processes may share the file (WAL mode; each claim is one ``BEGIN IMMEDIATE``
transaction, so two replayers never lease the same entry at once). Leases are wall-clock
timestamps (``wall_time``, default ``time.time``): an entry leased longer ago than the
claiming replayer's ``lease`` is taken over, which is how the work of a replayer that died
is finished. The file is created readable by its owner only (it holds request bodies).
Rows are read back by ``row_entry`` (``_letter``): a damaged one is an unreadable entry, not
an error. The file's ``user_version`` is the stored form's version: a file a newer version
wrote is refused when opened.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from resilience._validate import check_duration
from resilience.deadletter._letter import FORMAT, Depth, Entry, Letter, State, row_entry
from resilience.deadletter._rules import Action
from resilience.deadletter._store import ThreadedAsync

__all__ = ["SQLiteStore", "default_path"]

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    method TEXT NOT NULL,
    headers TEXT NOT NULL,
    body BLOB NOT NULL,
    key TEXT,
    why TEXT NOT NULL,
    reason TEXT NOT NULL,
    created REAL NOT NULL,
    attempts INTEGER NOT NULL,
    replays INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'ready',
    last_error TEXT NOT NULL DEFAULT '',
    owner TEXT,
    leased_at REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS dead_letters_key ON dead_letters (queue, key)
    WHERE key IS NOT NULL;
CREATE INDEX IF NOT EXISTS dead_letters_state ON dead_letters (queue, state, id);
"""
_COLUMNS: Final = (
    "id, kind, target, method, headers, body, key, why, reason, created, attempts, replays, "
    "state, last_error"
)
_NAMES: Final = tuple(_COLUMNS.split(", "))


def default_path() -> Path:
    """Where the default queue lives: ``$RESILIENCE_DEAD_LETTERS``, else
    ``$XDG_STATE_HOME/resilience/dead-letters.sqlite3`` (``~/.local/state`` when unset)."""
    named = os.environ.get("RESILIENCE_DEAD_LETTERS")
    if named:
        return Path(named)
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "resilience" / "dead-letters.sqlite3"


class SQLiteStore(ThreadedAsync):
    """Dead letters of the queue ``name`` in the SQLite file at ``path`` (created with its
    directory if missing; ``None``: ``default_path()``). ``lease``: seconds a replayer may hold
    an entry before another takes it over. ``timeout``: seconds to wait for a lock held by
    another process. Thread-safe: one connection, used under a lock. Close it (or use it as a
    context manager) when done.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        name: str = "default",
        lease: float = 60.0,
        timeout: float = 5.0,
        wall_time: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        check_duration(lease, "lease")
        check_duration(timeout, "timeout")
        self.path = Path(path) if path is not None else default_path()
        self.name = name
        self.lease = float(lease)
        self._wall_time = wall_time
        self.path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))  # owner-only from the start
        self._db = sqlite3.connect(
            self.path, timeout=timeout, isolation_level=None, check_same_thread=False
        )
        self._lock = threading.Lock()
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # a dead letter survives a power cut
            (version,) = self._db.execute("PRAGMA user_version").fetchone()
            if version > FORMAT:
                raise ValueError(
                    f"{self.path} was written by a newer version of resilience (format "
                    f"{version}; this one reads {FORMAT})"
                )
            self._db.executescript(_SCHEMA)
            if version < FORMAT:
                self._db.execute(f"PRAGMA user_version = {FORMAT}")
        except BaseException:
            self._db.close()
            raise

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r}, name={self.name!r}, lease={self.lease!r})"

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (the file stays)."""
        with self._lock:
            self._db.close()

    def add(self, letter: Letter, *, why: str, reason: str, attempts: int = 0) -> str:
        row = (
            self.name,
            letter.kind,
            letter.target,
            letter.method,
            json.dumps([list(pair) for pair in letter.headers]),
            letter.body,
            letter.key,
            why,
            reason,
            self._wall_time(),
            attempts,
        )
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO dead_letters (queue, kind, target, method, headers, body, key, why,"
                " reason, created, attempts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                row,
            )
            if cursor.rowcount == 1:
                return str(cursor.lastrowid)
            found = self._db.execute(
                "SELECT id FROM dead_letters WHERE queue = ? AND key = ?", (self.name, letter.key)
            ).fetchone()
        return str(found[0])

    def get(self, entry_id: str) -> Entry | None:
        rowid = _rowid(entry_id)
        if rowid is None:
            return None
        with self._lock:
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM dead_letters WHERE queue = ? AND id = ?",
                (self.name, rowid),
            ).fetchone()
        return None if row is None else _entry(row)

    def entries(self, *, state: State | None = None, limit: int = 100) -> list[Entry]:
        query = f"SELECT {_COLUMNS} FROM dead_letters WHERE queue = ?"
        values: list[Any] = [self.name]
        if state is not None:
            query += " AND state = ?"
            values.append(state)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY id LIMIT ?", (*values, limit)).fetchall()
        return [_entry(row) for row in rows]

    def depth(self) -> Depth:
        with self._lock:
            ready, every = self._db.execute(
                "SELECT count(CASE WHEN state = 'ready' THEN 1 END), count(*) FROM dead_letters"
                " WHERE queue = ?",
                (self.name,),
            ).fetchone()
        return Depth(ready, every - ready)  # a damaged state is never claimed: parked

    def claim(
        self, consumer: str, count: int, cursor: str | None
    ) -> tuple[list[Entry], str | None]:
        after = _rowid(cursor) or 0
        now = self._wall_time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                rows = self._db.execute(
                    f"SELECT {_COLUMNS} FROM dead_letters WHERE queue = ? AND state = 'ready'"
                    " AND id > ? AND (leased_at IS NULL OR leased_at <= ?) ORDER BY id LIMIT ?",
                    (self.name, after, now - self.lease, count),
                ).fetchall()
                self._db.executemany(
                    "UPDATE dead_letters SET owner = ?, leased_at = ? WHERE id = ?",
                    [(consumer, now, row[0]) for row in rows],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        entries = [_entry(row) for row in rows]
        return entries, (entries[-1].id if len(entries) == count else None)

    def settle(self, entry: Entry, consumer: str, action: Action) -> bool:
        rowid = _rowid(entry.id)
        op = action.op
        if op == "done":
            return self.drop(entry.id)
        if op == "release":
            sql = "UPDATE dead_letters SET owner = NULL, leased_at = NULL"
            values: tuple[Any, ...] = ()
        else:
            sql = (
                "UPDATE dead_letters SET owner = NULL, leased_at = NULL, replays = replays + 1,"
                " last_error = ?, state = ?"
            )
            values = (action.error, "parked" if op == "park" else "ready")
        with self._lock:
            cursor = self._db.execute(
                sql + " WHERE queue = ? AND id = ? AND owner = ?",
                (*values, self.name, rowid, consumer),
            )
        return cursor.rowcount == 1

    def drop(self, entry_id: str) -> bool:
        rowid = _rowid(entry_id)
        if rowid is None:
            return False
        with self._lock:
            cursor = self._db.execute(
                "DELETE FROM dead_letters WHERE queue = ? AND id = ?", (self.name, rowid)
            )
        return cursor.rowcount == 1


def _rowid(entry_id: str | None) -> int | None:
    """The row id of ``entry_id``, or ``None`` for anything that is not one."""
    if entry_id is None or not entry_id.isdigit() or len(entry_id) > 18:
        return None
    return int(entry_id)


def _entry(row: tuple[Any, ...]) -> Entry:
    return row_entry(dict(zip(_NAMES, row, strict=True)))
