"""DeadLetter: failed calls of a decorated function are parked with their arguments and key,
and a replay hands them to the handler registered under the function's name. Both colours."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from resilience import CircuitBreaker, Pipeline
from resilience.deadletter import (
    DeadLetter,
    DeadLetterQueue,
    Depth,
    SQLiteStore,
    register,
    replay,
    replay_async,
)
from resilience.deadletter._policy import handlers
from tests.conftest import Colour


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[DeadLetterQueue]:
    """A queue on a SQLite file in a temp dir; handlers registered by the test are removed."""
    before = dict(handlers)
    dead = DeadLetterQueue(SQLiteStore(tmp_path / "dead.sqlite3", name="jobs"))
    yield dead
    dead.close()
    handlers.clear()
    handlers.update(before)


class Mailer:
    """Sends mail; fails while ``down``; remembers what it sent."""

    def __init__(self) -> None:
        self.down = True
        self.sent: list[tuple[str, str]] = []

    def send(self, to: str, *, subject: str) -> str:
        if self.down:
            raise ConnectionError("smtp down")
        self.sent.append((to, subject))
        return "sent"


def test_a_failed_call_is_parked_and_the_caller_gets_the_error(
    queue: DeadLetterQueue, colour: Colour
) -> None:
    """The original exception reaches the caller with a note; name, args and key are kept."""
    mailer = Mailer()
    policy = DeadLetter(
        queue, name=f"mail-{colour.name}", key=lambda to, subject: f"{to}/{subject}"
    )
    send = colour.wrap(policy, mailer.send)
    with pytest.raises(ConnectionError) as caught:
        send("ann@example.org", subject="receipt 7")
    assert any("parked in dead-letter queue 'jobs'" in n for n in caught.value.__notes__)
    (entry,) = queue.entries()
    assert (entry.letter.kind, entry.letter.target) == ("call", f"mail-{colour.name}")
    assert entry.letter.key == "ann@example.org/receipt 7"
    assert entry.letter.arguments() == (["ann@example.org"], {"subject": "receipt 7"})
    assert (entry.why, entry.reason) == ("failed", "ConnectionError")


def test_the_same_key_is_parked_once(queue: DeadLetterQueue, colour: Colour) -> None:
    """A caller that retries the same call (same key) does not queue it twice."""
    policy = DeadLetter(queue, name=f"twice-{colour.name}", key=lambda to, subject: to)
    send = colour.wrap(policy, Mailer().send)
    for _ in range(3):
        with pytest.raises(ConnectionError):
            send("ann@example.org", subject="hi")
    assert queue.depth() == Depth(1, 0)


def test_success_and_unmatched_errors_are_not_parked(
    queue: DeadLetterQueue, colour: Colour
) -> None:
    """A call that returns, or raises something ``on`` does not match, parks nothing."""
    mailer = Mailer()
    policy = DeadLetter(queue, name=f"on-{colour.name}", on=TimeoutError)
    send = colour.wrap(policy, mailer.send)
    with pytest.raises(ConnectionError):
        send("a@example.org", subject="x")
    mailer.down = False
    assert send("a@example.org", subject="x") == "sent"
    assert queue.depth() == Depth(0, 0)


def test_arguments_json_cannot_hold_are_noted_not_parked(
    queue: DeadLetterQueue, colour: Colour
) -> None:
    """An argument that is not JSON-serialisable: nothing parked, the note says why."""
    policy = DeadLetter(queue, name=f"json-{colour.name}")

    def store(blob: object) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError) as caught:
        colour.wrap(policy, store)(object())
    assert any("not JSON-serialisable" in n for n in caught.value.__notes__)
    assert queue.depth() == Depth(0, 0)


def test_a_failing_key_function_never_replaces_the_callers_error(
    queue: DeadLetterQueue, colour: Colour
) -> None:
    """``key=`` raising (or returning a non-string) is noted; the caller's error stands."""
    for key in (lambda to, subject: 1 / 0, lambda to, subject: 42):
        policy = DeadLetter(queue, name=f"key-{colour.name}-{id(key)}", key=key)
        with pytest.raises(ConnectionError) as caught:
            colour.wrap(policy, Mailer().send)("a@example.org", subject="x")
        assert any("key= failed" in n for n in caught.value.__notes__)
    assert queue.depth() == Depth(0, 0)


def test_cancellation_is_never_parked(queue: DeadLetterQueue) -> None:
    """A cancelled coroutine (BaseException) leaves nothing in the queue."""

    async def slow() -> None:
        await asyncio.sleep(3600)

    guarded = DeadLetter(queue, name="slow")(slow)

    async def main() -> None:
        task = asyncio.create_task(guarded())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert queue.depth() == Depth(0, 0)


def test_replay_hands_entries_to_the_registered_function(
    queue: DeadLetterQueue, colour: Colour
) -> None:
    """Once the dependency is back, a replay calls the decorated function's original body
    with the kept arguments, and the entries leave the queue."""
    mailer = Mailer()
    send = colour.wrap(DeadLetter(queue, name=f"replay-{colour.name}"), mailer.send)
    for n in range(3):
        with pytest.raises(ConnectionError):
            send(f"{n}@example.org", subject=f"receipt {n}")
    mailer.down = False
    summary = colour.run(replay_async, None, queue) if colour.is_async else replay(None, queue)
    assert summary.succeeded == 3
    assert mailer.sent == [(f"{n}@example.org", f"receipt {n}") for n in range(3)]
    assert queue.depth() == Depth(0, 0)


def test_coroutine_handlers_replay_in_replay_async_only(queue: DeadLetterQueue) -> None:
    """The sync replay skips (and releases) entries whose handler is a coroutine function;
    replay_async awaits them."""
    done: list[int] = []
    ok = False

    @DeadLetter(queue, name="async-job")
    async def job(n: int) -> None:
        if not ok:
            raise ConnectionError("down")
        done.append(n)

    with pytest.raises(ConnectionError):
        asyncio.run(job(1))
    ok = True
    assert replay(None, queue).skipped == 1
    assert asyncio.run(replay_async(None, queue)).succeeded == 1
    assert done == [1]


def test_entries_without_a_handler_are_skipped_and_kept(queue: DeadLetterQueue) -> None:
    """An entry whose name has no handler in this process stays ready for one that has."""
    with pytest.raises(ConnectionError):
        DeadLetter(queue, name="gone")(Mailer().send)("a@example.org", subject="x")
    summary = replay(None, queue, handlers={})
    assert (summary.skipped, summary.succeeded) == (1, 0)
    assert queue.depth() == Depth(1, 0)


def test_a_breaker_open_in_the_handler_stops_the_replay(queue: DeadLetterQueue) -> None:
    """A handler refused by its own breaker is no replay: the run stops, entries stay."""
    breaker = CircuitBreaker("smtp")
    with pytest.raises(ConnectionError):
        Pipeline(DeadLetter(queue, name="guarded"))(Mailer().send)("a@example.org", subject="x")
    breaker.open()
    summary = replay(None, queue, handlers={"guarded": breaker(Mailer().send)})
    assert summary.stopped == "refused"
    (entry,) = queue.entries()
    assert entry.replays == 0


def test_a_name_is_one_handler() -> None:
    """A different function under a taken name is refused; the same one again is fine."""

    def first() -> None: ...

    def second() -> None: ...

    register("unique-name-for-this-test", first)
    register("unique-name-for-this-test", first)
    with pytest.raises(ValueError, match="unique-name-for-this-test"):
        register("unique-name-for-this-test", second)
    handlers.pop("unique-name-for-this-test")


def test_the_decorator_keeps_the_signature(queue: DeadLetterQueue) -> None:
    """@DeadLetter keeps the function's name and signature."""

    def charge(order: str, amount: int = 1) -> str:
        return order

    wrapped = DeadLetter(queue, name="sig")(charge)
    assert wrapped.__name__ == "charge"
    assert inspect.signature(wrapped) == inspect.signature(charge)


@pytest.mark.parametrize(
    ("options", "kind", "match"),
    [
        ({"name": ""}, ValueError, "name"),
        ({"name": None}, ValueError, "name"),
        ({"name": "x", "key": "order"}, TypeError, "key"),
        ({"name": "x", "on": 42}, TypeError, "on"),
    ],
)
def test_policy_options_are_checked(
    queue: DeadLetterQueue, options: dict[str, Any], kind: type[Exception], match: str
) -> None:
    """Bad options fail at construction, naming the parameter."""
    with pytest.raises(kind, match=match):
        DeadLetter(queue, **options)
    with pytest.raises(TypeError, match="queue"):
        DeadLetter(object(), name="x")  # type: ignore[arg-type]
