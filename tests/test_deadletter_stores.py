"""One contract for every dead-letter store: SQLite (a file in a temp dir) and Redis Streams (a
real redis-server). Each test runs against both through the ``stores`` fixture."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from resilience.deadletter import Depth, Entry, Letter, RedisStreamStore, SQLiteStore
from resilience.deadletter._rules import Action
from resilience.deadletter._store import DeadLetterStore
from tests.redis_server import RedisServer

pytestmark = pytest.mark.usefixtures("close_redis_clients")

# (store name, lease) -> a store over the same backing data as every other one of the test.
StoreMaker = Callable[..., DeadLetterStore]


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreMaker]:
    """Makes stores of one kind sharing one backing: a SQLite file or a real Redis."""
    made: list[DeadLetterStore] = []
    if request.param == "sqlite":
        path = tmp_path / "dead.sqlite3"

        def make(name: str = "q", lease: float = 60.0) -> DeadLetterStore:
            made.append(SQLiteStore(path, name=name, lease=lease))
            return made[-1]

    else:
        server: RedisServer = request.getfixturevalue("redis_server")

        def make(name: str = "q", lease: float = 60.0) -> DeadLetterStore:
            made.append(RedisStreamStore(server.client(), name=name, lease=lease))
            return made[-1]

    yield make
    for store in made:
        store.close()


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
