"""``python -m resilience.deadletter``: list, show, replay and drop dead letters.

The queue is a SQLite file (``--db``, default ``default_path()``) or a Redis stream
(``--redis URL``), named ``--name``. ``replay`` sends HTTP entries through
``resilient_client()`` (the standard pipeline: a breaker and a retry budget, so a dependency
still down is not stormed) or through the client ``--client module:factory`` returns (bring
your credentials there: none are kept in the queue); ``--header-env NAME=VAR`` adds a header
whose value is read from the environment variable ``VAR`` (never from the command line, where
``ps`` shows it). Call entries go to the handlers that the modules given with ``--import``
register (``DeadLetter``-decorated functions).

An entry the store cannot read back is listed and shown as unreadable (with the class of the
error, never its content) and can be dropped; a replay parks it.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import importlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import httpx

from resilience.deadletter._letter import Entry, Unreadable
from resilience.deadletter._queue import DeadLetterQueue
from resilience.deadletter._redis import RedisStreamStore
from resilience.deadletter._replay import ReplaySummary, replay
from resilience.deadletter._sqlite import SQLiteStore, default_path

__all__ = ["main"]

_BAR = 30


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    """Run the command line; return the exit status (0 ok, 1 no such entry, 2 bad usage)."""
    out = out or sys.stdout
    options = _parser().parse_args(argv)
    if not options.redis:
        path = Path(options.db) if options.db else default_path()
        if not path.exists():
            print(f"no dead-letter queue at {path}", file=out)
            return 1
    queue = _queue(options)
    try:
        if options.command == "list":
            return _list(queue, options, out)
        if options.command == "show":
            return _show(queue, options.id, out)
        if options.command == "drop":
            dropped = queue.drop(options.id)
            print(f"dropped {options.id}" if dropped else f"no entry {options.id}", file=out)
            return 0 if dropped else 1
        return _replay(queue, options, out)
    finally:
        queue.close()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m resilience.deadletter",
        description="Inspect and replay a dead-letter queue.",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--db", help=f"SQLite file (default: {default_path()})")
    where.add_argument("--redis", metavar="URL", help="Redis URL (redis://host:port/db)")
    parser.add_argument("--name", default="default", help="the queue's name (default: default)")
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="list entries, oldest first")
    listing.add_argument("--state", choices=("ready", "parked"))
    listing.add_argument("--limit", type=_count, default=100)
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    commands.add_parser("show", help="show one entry").add_argument("id")
    commands.add_parser("drop", help="forget one entry").add_argument("id")
    again = commands.add_parser("replay", help="send ready entries again")
    again.add_argument("--limit", type=_count, help="at most this many entries")
    again.add_argument("--max-time", type=float, help="at most this many seconds")
    again.add_argument("--stop-after-failures", type=_count, default=5)
    again.add_argument("--max-replays", type=_count, default=5, help="failed replays that park")
    again.add_argument("--client", metavar="MODULE:FACTORY", help="builds the httpx.Client")
    again.add_argument("--header-env", metavar="NAME=VAR", action="append", default=[])
    again.add_argument("--import", dest="imports", metavar="MODULE", action="append", default=[])
    again.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _queue(options: argparse.Namespace) -> DeadLetterQueue:
    max_replays = getattr(options, "max_replays", 5)
    if options.redis:
        store = RedisStreamStore.from_url(options.redis, name=options.name)
        return DeadLetterQueue(store, max_replays=max_replays)
    return DeadLetterQueue(SQLiteStore(options.db, name=options.name), max_replays=max_replays)


def _list(queue: DeadLetterQueue, options: argparse.Namespace, out: TextIO) -> int:
    entries = queue.entries(state=options.state, limit=options.limit)
    if options.json:
        for entry in entries:
            print(json.dumps(_summary(entry)), file=out)
        return 0
    print(
        f"{'id':<20} {'state':<7} {'replays':>7} {'why':<12} {'created (UTC)':<20} what", file=out
    )
    for entry in entries:
        row = _summary(entry)
        print(
            f"{row['id']:<20} {row['state']:<7} {row['replays']:>7} {row['why']:<12} "
            f"{row['created']:<20} {row['what']}",
            file=out,
        )
    depth = queue.depth()
    print(f"{depth.ready} ready, {depth.parked} parked", file=out)
    return 0


def _summary(entry: Entry) -> dict[str, Any]:
    letter = entry.letter
    row = {
        "id": entry.id,
        "state": entry.state,
        "replays": entry.replays,
        "why": entry.why,
        "created": _when(entry),
    }
    if isinstance(letter, Unreadable):
        return {**row, "what": letter.reason, "key": None, "unreadable": letter.reason}
    what = f"{letter.method} {letter.target}" if letter.kind == "http" else f"call {letter.target}"
    return {**row, "what": _clip(what), "key": letter.key}


def _when(entry: Entry) -> str:
    if isinstance(entry.letter, Unreadable):
        return "-"
    moment = datetime.datetime.fromtimestamp(entry.created, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _clip(text: str, width: int = 120) -> str:
    """``text`` cut to ``width`` characters for a table row (``show`` prints it whole)."""
    return text if len(text) <= width else text[: width - 1] + "…"


def _show(queue: DeadLetterQueue, entry_id: str, out: TextIO) -> int:
    entry = queue.get(entry_id)
    if entry is None:
        print(f"no entry {entry_id}", file=out)
        return 1
    letter = entry.letter
    rows: list[tuple[str, object]] = [("id", entry.id), ("state", entry.state)]
    if isinstance(letter, Unreadable):
        rows += [("unreadable", letter.reason)]
    else:
        rows += [
            ("kind", letter.kind),
            ("target", letter.target),
            ("method", letter.method or "-"),
            ("key", letter.key or "-"),
            ("why", entry.why),
            ("reason", entry.reason),
            ("created", _when(entry) + " UTC"),
            ("attempts", entry.attempts or "-"),
        ]
    rows += [("replays", entry.replays), ("last error", entry.last_error or "-")]
    if not isinstance(letter, Unreadable):
        rows += [("header", f"{name}: {value}") for name, value in letter.headers]
        rows += [("body", _body(letter.body))]
    for name, value in rows:
        print(f"{name + ':':<12}{value}", file=out)
    return 0


def _body(body: bytes) -> str:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return f"({len(body)} bytes, base64) {base64.b64encode(body).decode('ascii')}"
    return text if text.isprintable() or not text else repr(text)


def _replay(queue: DeadLetterQueue, options: argparse.Namespace, out: TextIO) -> int:
    for module in options.imports:
        importlib.import_module(module)
    client = _client(options)
    total = queue.depth().ready
    if options.limit is not None:
        total = min(total, options.limit)
    bar = None if options.quiet or not sys.stderr.isatty() else _Bar(total, sys.stderr)
    try:
        summary = replay(
            client,
            queue,
            limit=options.limit,
            max_time=options.max_time,
            stop_after_failures=options.stop_after_failures,
            progress=bar,
        )
    finally:
        client.close()
        if bar is not None:
            bar.end()
    print(_report(summary), file=out)
    return 0


def _client(options: argparse.Namespace) -> httpx.Client:
    headers = {}
    for pair in options.header_env:
        name, _, variable = pair.partition("=")
        if not name or not variable or variable not in os.environ:
            raise SystemExit(f"--header-env {pair!r}: give NAME=VAR with VAR set")
        headers[name] = os.environ[variable]
    if options.client:
        module, _, factory = options.client.partition(":")
        client = getattr(importlib.import_module(module), factory)()
        if not isinstance(client, httpx.Client):
            raise SystemExit(f"--client {options.client}: returned {client!r}, not an httpx.Client")
        client.headers.update(headers)
        return client
    from resilience.http import resilient_client

    return resilient_client(headers=headers)  # the standard pipeline: breaker, budget, deadline


class _Bar:
    """A progress bar on a terminal: replayed of total, and the counts so far."""

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total = max(total, 1)
        self.stream = stream

    def __call__(self, report: ReplaySummary) -> None:
        done = report.succeeded + report.failed + report.parked + report.skipped
        filled = min(_BAR, _BAR * done // self.total)
        self.stream.write(
            f"\r[{'#' * filled}{'.' * (_BAR - filled)}] {done}/{self.total}  "
            f"ok {report.succeeded}  failed {report.failed}  parked {report.parked}"
        )
        self.stream.flush()

    def end(self) -> None:
        self.stream.write("\n")


def _report(summary: ReplaySummary) -> str:
    depth = summary.depth
    left = f"{depth.ready} ready, {depth.parked} parked" if depth is not None else "unknown"
    return (
        f"replayed in {summary.elapsed:.1f}s: {summary.succeeded} succeeded, {summary.failed} "
        f"failed (kept for the next replay), {summary.parked} parked, {summary.skipped} "
        f"skipped; stopped: {summary.stopped}; left: {left}"
    )
