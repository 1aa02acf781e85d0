"""One contract for every dead-letter store: SQLite (a file in a temp dir) and Redis Streams (a
real redis-server). Each test runs against both through the ``stores`` fixture."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import os
import sqlite3
import stat
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from resilience.deadletter import (
    DeadLetterQueue,
    Depth,
    Entry,
    Letter,
    RedisStreamStore,
    SQLiteStore,
    Unreadable,
    replay,
    replay_async,
)
from resilience.deadletter._cli import main
from resilience.deadletter._letter import FORMAT
from resilience.deadletter._rules import Action
from resilience.deadletter._store import DeadLetterStore
from tests.redis_server import RedisServer

pytestmark = pytest.mark.usefixtures("close_redis_clients")


class Backing:
    """Makes stores of one kind over the same data (``backing(name, lease)``), and writes
    into that data behind the store's back (``corrupt``), as a damaged file or a hostile
    operator would."""

    def __init__(self, kind: str, path: Path, server: RedisServer | None) -> None:
        self.kind = kind
        self.path = path
        self.server = server
        self.made: list[DeadLetterStore] = []

    def __call__(self, name: str = "q", lease: float = 60.0) -> DeadLetterStore:
        if self.server is None:
            self.made.append(SQLiteStore(self.path, name=name, lease=lease))
        else:
            self.made.append(RedisStreamStore(self.server.client(), name=name, lease=lease))
        return self.made[-1]

    def corrupt(self, entry_id: str, damage: Damage) -> None:
        """Apply ``damage`` to the stored entry ``entry_id``: a SQLite column set to a value,
        or a Redis hash field (the entry's JSON, or its state) rewritten."""
        sqlite_change, redis_change = damage
        if self.server is None:
            column, value = sqlite_change
            with closing(sqlite3.connect(self.path)) as db, db:
                db.execute(f"UPDATE dead_letters SET {column} = ? WHERE id = ?", (value, entry_id))
            return
        client = self.server.client()
        field, change = redis_change
        key = f"resilience:dl:{{q}}:{field}"
        old = client.hget(key, entry_id)
        client.hset(key, entry_id, change(old.decode() if old is not None else ""))
        client.close()


# A damage: (SQLite column, value), (Redis hash "data" or "state", old text -> new text).
Damage = tuple[tuple[str, object], tuple[str, Callable[[str], str]]]


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backing]:
    """Makes stores of one kind sharing one backing: a SQLite file or a real Redis."""
    server = None if request.param == "sqlite" else request.getfixturevalue("redis_server")
    backing = Backing(request.param, tmp_path / "dead.sqlite3", server)
    yield backing
    for store in backing.made:
        store.close()


StoreMaker = Backing


def letter(n: int = 0, *, key: str | None = "auto") -> Letter:
    """An HTTP letter numbered ``n`` (its key ``"k-n"`` unless given)."""
    return Letter(
        "http",
        f"http://127.0.0.1:9/charges/{n}",
        "POST",
        (("Content-Type", "application/json"), ("Idempotency-Key", f'"k-{n}"'), ("X-Ä", "ü")),
        b'{"order": %d}\x00\xff' % n,
        f'"k-{n}"' if key == "auto" else key,
    )


def add(store: DeadLetterStore, n: int = 0, **options: Any) -> str:
    return store.add(letter(n, **options), why="exhausted", reason="503 after retries")


def claim_all(store: DeadLetterStore, consumer: str, count: int = 3) -> list[Entry]:
    """Walk the whole queue once, as a replay run does (every batch, to the end)."""
    found: list[Entry] = []
    cursor: str | None = None
    while True:
        entries, cursor = store.claim(consumer, count, cursor)
        found += entries
        if cursor is None:
            return found


def test_an_entry_comes_back_as_it_was_added(stores: StoreMaker) -> None:
    """get returns the letter byte for byte (binary body, non-ASCII header), why, reason and
    a ready state with no replays."""
    store = stores()
    entry_id = add(store, 7)
    entry = store.get(entry_id)
    assert entry is not None
    assert entry.id == entry_id
    assert entry.letter == letter(7)
    assert (entry.why, entry.reason, entry.state, entry.replays) == (
        "exhausted", "503 after retries", "ready", 0,
    )  # fmt: skip
    assert entry.created > 1_600_000_000  # wall-clock seconds


def test_a_key_is_queued_once(stores: StoreMaker) -> None:
    """Adding a letter whose key is already queued returns the first entry's id."""
    store = stores()
    first = add(store, 1)
    assert add(store, 1) == first
    assert store.depth() == Depth(1, 0)


def test_letters_without_a_key_are_all_kept(stores: StoreMaker) -> None:
    """Keyless letters (failed calls without a key) are distinct entries."""
    store = stores()
    ids = {add(store, 1, key=None), add(store, 1, key=None)}
    assert len(ids) == 2
    assert store.depth() == Depth(2, 0)


def test_entries_are_listed_oldest_first(stores: StoreMaker) -> None:
    """entries() lists in the order they were added, bounded by limit."""
    store = stores()
    ids = [add(store, n) for n in range(5)]
    assert [e.id for e in store.entries()] == ids
    assert [e.id for e in store.entries(limit=2)] == ids[:2]


def test_queues_with_other_names_are_apart(stores: StoreMaker) -> None:
    """Two queue names on one backing see only their own entries."""
    one, other = stores("one"), stores("other")
    add(one, 1)
    assert other.depth() == Depth(0, 0)
    assert other.entries() == []
    assert claim_all(other, "c") == []


def test_a_claimed_entry_is_not_given_to_another_replayer_within_its_lease(
    stores: StoreMaker,
) -> None:
    """Two replayers claiming at once never get the same entry."""
    store = stores()
    ids = {add(store, n) for n in range(4)}
    first = stores().claim("a", 2, None)[0]
    second = claim_all(stores(), "b")
    assert {e.id for e in first} | {e.id for e in second} == ids
    assert not {e.id for e in first} & {e.id for e in second}


def test_an_entry_held_past_the_lease_is_taken_over(stores: StoreMaker) -> None:
    """A replayer that died keeps nothing: with its lease over (here: a zero lease), another
    replayer claims its entries."""
    store = stores()
    entry_id = add(store)
    assert [e.id for e in claim_all(store, "dead")] == [entry_id]
    assert claim_all(stores(lease=60.0), "patient") == []
    taken = claim_all(stores(lease=0.0), "heir")
    assert [e.id for e in taken] == [entry_id]


def test_a_run_visits_each_entry_once_and_the_next_run_again(stores: StoreMaker) -> None:
    """An entry put back after a failed replay is not claimed again by the same walk, and is
    claimed by the next one (with its replay counted and its error kept)."""
    store = stores()
    ids = [add(store, n) for n in range(5)]
    cursor: str | None = None
    seen: list[str] = []
    while True:
        entries, cursor = store.claim("run-1", 2, cursor)
        for entry in entries:
            seen.append(entry.id)
            assert store.settle(entry, "run-1", Action("retry", "503"))
        if cursor is None:
            break
    assert seen == ids
    again = claim_all(store, "run-2")
    assert [e.id for e in again] == ids
    assert {(e.replays, e.last_error) for e in again} == {(1, "503")}


def test_release_puts_an_entry_back_without_counting_a_replay(stores: StoreMaker) -> None:
    """A released entry (claimed, never sent) keeps its replay count and is claimable."""
    store = stores()
    add(store)
    (entry,) = claim_all(store, "a")
    assert store.settle(entry, "a", Action("release"))
    (again,) = claim_all(store, "b")
    assert again.replays == 0


def test_parking_keeps_the_entry_for_inspection_only(stores: StoreMaker) -> None:
    """A parked entry leaves the ready set, keeps its error, is listed as parked and is
    never claimed again."""
    store = stores()
    keep, park = add(store, 1), add(store, 2)
    claimed = {e.id: e for e in claim_all(store, "a")}
    assert store.settle(claimed[park], "a", Action("park", "422: key reused"))
    assert store.settle(claimed[keep], "a", Action("release"))
    assert store.depth() == Depth(1, 1)
    parked = store.get(park)
    assert parked is not None
    assert (parked.state, parked.replays, parked.last_error) == ("parked", 1, "422: key reused")
    assert [e.id for e in store.entries(state="parked")] == [park]
    assert [e.id for e in store.entries(state="ready")] == [keep]
    assert [e.id for e in claim_all(stores(lease=0.0), "b")] == [keep]


def test_only_the_holder_settles_an_entry(stores: StoreMaker) -> None:
    """A replayer whose lease was taken over cannot retry, park or release the entry."""
    store = stores()
    add(store)
    (stale,) = claim_all(store, "slow")
    (held,) = claim_all(stores(lease=0.0), "heir")
    assert not store.settle(stale, "slow", Action("park", "late"))
    assert not store.settle(stale, "slow", Action("retry", "late"))
    assert store.settle(held, "heir", Action("retry", "503"))
    entry = store.get(held.id)
    assert entry is not None and (entry.state, entry.replays) == ("ready", 1)


def test_done_removes_an_entry_whoever_finishes_it(stores: StoreMaker) -> None:
    """A finished entry leaves the queue (whoever sent it: the work is done) and frees its key."""
    store = stores()
    entry_id = add(store, 3)
    (entry,) = claim_all(store, "a")
    assert store.settle(entry, "someone-else", Action("done"))
    assert store.get(entry_id) is None
    assert store.depth() == Depth(0, 0)
    assert add(store, 3) != entry_id  # the key can be queued again


def test_drop_forgets_ready_and_parked_entries(stores: StoreMaker) -> None:
    """drop removes an entry in either state; unknown or malformed ids are refused quietly."""
    store = stores()
    ready, parked = add(store, 1), add(store, 2)
    claimed = {e.id: e for e in claim_all(store, "a")}
    store.settle(claimed[parked], "a", Action("park", "422"))
    assert store.drop(ready) and store.drop(parked)
    assert not store.drop(ready)
    assert not store.drop("no-such-id")
    assert store.get("0-0") is None and store.get("../etc") is None
    assert store.depth() == Depth(0, 0)


def test_the_async_steps_match_the_sync_ones(stores: StoreMaker) -> None:
    """add_async, claim_async and settle_async do what their sync twins do."""
    store = stores()

    async def main() -> None:
        entry_id = await store.add_async(letter(1), why="unknown", reason="ReadTimeout")
        entries, cursor = await store.claim_async("a", 5, None)
        while cursor is not None:
            more, cursor = await store.claim_async("a", 5, cursor)
            entries += more
        assert [e.id for e in entries] == [entry_id]
        assert await store.settle_async(entries[0], "a", Action("park", "422"))

    asyncio.run(main())
    assert store.depth() == Depth(0, 1)


def test_the_sqlite_file_is_private_to_its_owner(tmp_path: Path) -> None:
    """The file that holds request bodies is created readable and writable by its owner only."""
    path = tmp_path / "sub" / "dead.sqlite3"
    with SQLiteStore(path):
        mode = stat.S_IMODE(os.stat(path).st_mode)
    assert mode == 0o600


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [("name", "", "name"), ("lease", -1.0, "lease"), ("timeout", float("nan"), "timeout")],
)
def test_sqlite_options_are_checked(tmp_path: Path, option: str, value: Any, message: str) -> None:
    """Bad options fail at construction, naming the parameter."""
    with pytest.raises((ValueError, TypeError), match=message):
        SQLiteStore(tmp_path / "x.sqlite3", **{option: value})


def test_redis_store_refuses_an_async_client_and_braces(redis_server: RedisServer) -> None:
    """The Redis store needs a sync client, and a name that cannot break its hash tag."""
    client = redis_server.async_client()
    with pytest.raises(TypeError, match="synchronous"):
        RedisStreamStore(client)
    with pytest.raises(ValueError, match="name"):
        RedisStreamStore(redis_server.client(), name="a}b")
    with pytest.raises(TypeError, match="client"):
        RedisStreamStore(object())


# -- entries that cannot be read: a damaged file, a hostile write, a newer version -------------
#
# Every damaged value carries "SECRET": it must never reach a reason, a log record or the
# command line's output (only the class of the error does).


def _in_letter(field: str, value: object) -> Callable[[str], str]:
    def change(old: str) -> str:
        data = json.loads(old)
        data["letter"][field] = value
        return json.dumps(data)

    return change


def _in_entry(field: str, value: object) -> Callable[[str], str]:
    def change(old: str) -> str:
        return json.dumps({**json.loads(old), field: value})

    return change


def _without(field: str) -> Callable[[str], str]:
    def change(old: str) -> str:
        data = json.loads(old)
        del data[field]
        return json.dumps(data)

    return change


HUGE = "SECRET" + "x" * (1 << 20)
DAMAGES: dict[str, Damage] = {
    "truncated JSON": (
        ("headers", '[["SECRET", "appl'),
        ("data", lambda old: "SECRET" + old[: len(old) // 2]),
    ),
    "a field of the wrong type": (
        ("created", "SECRET-yesterday"),
        ("data", _in_entry("created", "SECRET-yesterday")),
    ),
    "a missing field": (
        ("headers", '[["SECRET-a-name-without-a-value"]]'),
        ("data", _without("why")),
    ),
    "headers of the wrong shape": (
        ("headers", '{"SECRET": 1}'),
        ("data", _in_letter("headers", {"SECRET": 1})),
    ),
    "a kind this version does not know": (
        ("kind", "SECRET-grpc"),
        ("data", _in_letter("kind", "SECRET-grpc")),
    ),
    "a body that is not base64": (
        ("body", "SECRET%%%"),
        ("data", _in_letter("body", "SECRET%%%")),
    ),
    "call arguments that are not JSON": (
        ("body", b"SECRET{"),
        ("data", _in_letter("body", base64.b64encode(b"SECRET{").decode())),
    ),
    "a huge field": (("target", HUGE), ("data", _in_letter("target", HUGE))),
    "nesting deeper than any entry": (
        ("headers", "[" * 100_000),
        ("data", lambda _: "[" * 100_000),
    ),
    "a time out of range": (("created", 1e300), ("data", _in_entry("created", 1e300))),
}


def call(n: int) -> Letter:
    """A call letter numbered ``n`` for the handler ``h`` (its key ``"k-n"``)."""
    return Letter("call", "h", body=b'{"args": [%d], "kwargs": {}}' % n, key=f"k-{n}")


def three_with_one_damaged(stores: Backing, damage: Damage) -> tuple[DeadLetterStore, list[str]]:
    """A store holding three call entries, the middle one damaged."""
    store = stores()
    ids = [store.add(call(n), why="failed", reason="ConnectionError") for n in range(3)]
    stores.corrupt(ids[1], damage)
    return store, ids


@pytest.mark.parametrize("damage", DAMAGES.values(), ids=DAMAGES.keys())
def test_an_unreadable_entry_is_read_as_such(stores: Backing, damage: Damage) -> None:
    """get, entries and claim return a damaged entry as unreadable (the class of the error,
    never its content), the others as they were; depth counts it."""
    store, ids = three_with_one_damaged(stores, damage)
    entry = store.get(ids[1])
    assert entry is not None and isinstance(entry.letter, Unreadable)
    assert entry.letter.reason.startswith("unreadable: ") and not entry.letter.newer
    assert "SECRET" not in repr(entry)
    listed = store.entries()
    assert [e.id for e in listed] == ids
    assert [isinstance(e.letter, Unreadable) for e in listed] == [False, True, False]
    assert listed[0].letter == call(0) and listed[2].letter == call(2)
    assert [e.id for e in claim_all(store, "a", count=2)] == ids
    assert store.depth() == Depth(3, 0)


@pytest.mark.parametrize("damage", DAMAGES.values(), ids=DAMAGES.keys())
def test_a_replay_parks_an_unreadable_entry_and_goes_on(
    stores: Backing, damage: Damage, caplog: pytest.LogCaptureFixture
) -> None:
    """The first replay to claim a damaged entry parks it with the error's class as its
    reason, and replays the others; the next replay has nothing left to do."""
    store, ids = three_with_one_damaged(stores, damage)
    queue, done = DeadLetterQueue(store), []
    handlers = {"h": done.append}
    with caplog.at_level(logging.DEBUG, logger="resilience"):
        summary = replay(None, queue, handlers=handlers)
    assert (summary.succeeded, summary.parked, summary.failed, summary.stopped) == (
        2, 1, 0, "empty",
    )  # fmt: skip
    assert done == [0, 2]
    assert store.depth() == Depth(0, 1)
    parked = store.get(ids[1])
    assert parked is not None and parked.state == "parked"
    assert parked.last_error.startswith("unreadable: ")
    assert [e.id for e in store.entries(state="parked")] == [ids[1]]
    assert "SECRET" not in caplog.text and ids[1] in caplog.text
    again = replay(None, queue, handlers=handlers)
    assert (again.succeeded, again.parked, again.skipped) == (0, 0, 0)


def test_replay_async_parks_an_unreadable_entry_and_goes_on(stores: Backing) -> None:
    """replay_async shares the rule: the damaged entry is parked unsent, the others run
    (a coroutine handler among them)."""
    store, ids = three_with_one_damaged(stores, DAMAGES["truncated JSON"])
    done: list[int] = []

    async def handler(n: int) -> None:
        done.append(n)

    summary = asyncio.run(replay_async(None, DeadLetterQueue(store), handlers={"h": handler}))
    assert (summary.succeeded, summary.parked, done) == (2, 1, [0, 2])
    parked = store.get(ids[1])
    assert parked is not None and parked.last_error.startswith("unreadable: ")


@pytest.mark.parametrize("damage", DAMAGES.values(), ids=DAMAGES.keys())
def test_drop_removes_an_unreadable_entry_and_frees_its_key(
    stores: Backing, damage: Damage
) -> None:
    """drop forgets a damaged entry; its key can be queued again and reads back whole."""
    store, ids = three_with_one_damaged(stores, damage)
    assert store.drop(ids[1])
    assert store.get(ids[1]) is None and not store.drop(ids[1])
    assert store.depth() == Depth(2, 0)
    again = store.add(call(1), why="failed", reason="ConnectionError")
    assert again != ids[1]
    entry = store.get(again)
    assert entry is not None and entry.letter == call(1)


def test_a_damaged_state_counts_as_parked_after_a_replay(stores: Backing) -> None:
    """An entry whose state is garbage is never replayed: after a replay it is parked (and
    counted so), the others are done."""
    store, ids = three_with_one_damaged(
        stores, (("state", "SECRET-zombie"), ("state", lambda _: "SECRET-zombie"))
    )
    summary = replay(None, DeadLetterQueue(store), handlers={"h": lambda n: None})
    assert summary.succeeded == 2
    assert store.depth() == Depth(0, 1)
    entry = store.get(ids[1])
    assert entry is not None and entry.state == "parked" and "SECRET" not in repr(entry)


@pytest.mark.parametrize("damage", DAMAGES.values(), ids=DAMAGES.keys())
def test_the_command_line_shows_and_drops_an_unreadable_entry(
    stores: Backing, damage: Damage
) -> None:
    """list marks a damaged entry unreadable, show prints what is known about it, drop
    removes it: exit 0 each time, nothing of its content printed."""
    store, ids = three_with_one_damaged(stores, damage)
    if stores.server is None:
        where = ["--db", str(stores.path), "--name", "q"]
    else:
        where = ["--redis", stores.server.url, "--name", "q"]

    def run(*args: str) -> tuple[int, str]:
        out = io.StringIO()
        return main([*where, *args], out=out), out.getvalue()

    status, listing = run("list")
    assert status == 0 and "SECRET" not in listing
    rows = listing.splitlines()
    assert len(rows) == 5 and "unreadable: " in rows[2] and rows[-1] == "3 ready, 0 parked"
    status, as_json = run("list", "--json")
    assert status == 0 and json.loads(as_json.splitlines()[1])["unreadable"].startswith(
        "unreadable: "
    )
    status, shown = run("show", ids[1])
    assert status == 0 and "SECRET" not in shown
    assert f"id:         {ids[1]}" in shown and "unreadable: " in shown
    assert run("drop", ids[1]) == (0, f"dropped {ids[1]}\n")
    assert store.depth() == Depth(2, 0)


@pytest.mark.redis
def test_an_entry_from_a_newer_version_is_left_for_a_replayer_that_reads_it(
    redis_server: RedisServer,
) -> None:
    """A Redis entry written in a newer format is listed as such and skipped by replays: it
    stays ready (parking it would take it from the newer replayers of a mixed fleet)."""
    backing = Backing("redis", Path("unused"), redis_server)
    store, ids = three_with_one_damaged(backing, (("", None), ("data", _in_entry("v", 2))))
    entry = store.get(ids[1])
    assert entry is not None and isinstance(entry.letter, Unreadable) and entry.letter.newer
    summary = replay(None, DeadLetterQueue(store), handlers={"h": lambda n: None})
    assert (summary.succeeded, summary.skipped, summary.parked) == (2, 1, 0)
    assert store.depth() == Depth(1, 0)
    store.close()


def test_a_sqlite_file_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    """A file whose format is newer than this version's is refused when opened, naming the
    format, instead of being misread."""
    path = tmp_path / "dead.sqlite3"
    SQLiteStore(path).close()
    with closing(sqlite3.connect(path)) as db, db:
        db.execute(f"PRAGMA user_version = {FORMAT + 1}")
    with pytest.raises(ValueError, match="newer"):
        SQLiteStore(path)
