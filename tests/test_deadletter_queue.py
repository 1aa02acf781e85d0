"""DeadLetterQueue: what it parks of a request (no credentials), what the caller sees (a note
or a response extension), and that a failing store never breaks the call."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from resilience import CircuitOpenError
from resilience.deadletter import (
    ENTRY_EXTENSION,
    REPLAY_EXTENSION,
    DeadLetterQueue,
    DeadLetterRecorded,
    Depth,
    RedisStreamStore,
    SQLiteStore,
    default_path,
    parked_entry,
)
from resilience.deadletter._letter import MAX_TEXT
from resilience.testing import EventRecorder

SECRET = "s3cr3t-token-value"


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[DeadLetterQueue]:
    """A queue on a SQLite file in a temp dir."""
    dead = DeadLetterQueue(SQLiteStore(tmp_path / "dead.sqlite3", name="payments"))
    yield dead
    dead.close()


def keyed(**options: Any) -> httpx.Request:
    """A keyed POST carrying every kind of credential."""
    headers = {
        "Idempotency-Key": '"order-1"',
        "Authorization": f"Bearer {SECRET}",
        "Cookie": f"session={SECRET}",
        "Proxy-Authorization": f"Basic {SECRET}",
        "X-Api-Key": SECRET,
        "X-Tenant": "acme",
        "Request-Timeout-Ms": "1500",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    }
    return httpx.Request(
        options.pop("method", "POST"),
        options.pop("url", f"http://user:{SECRET}@127.0.0.1:9/charges?order=1"),
        headers={**headers, **options.pop("headers", {})},
        **({"json": {"order": 1}} | options),
    )


def test_a_final_503_is_parked_and_named_on_the_response(queue: DeadLetterQueue) -> None:
    """The response the caller gets is unchanged but for the extension naming the entry."""
    request = keyed()
    response = httpx.Response(503, request=request)
    entry_id = queue.park_response(request, response)
    assert entry_id is not None
    assert response.extensions[ENTRY_EXTENSION] == entry_id
    entry = queue.get(entry_id)
    assert entry is not None
    assert (entry.why, entry.letter.method, entry.letter.key) == ("exhausted", "POST", '"order-1"')
    assert entry.letter.body == b'{"order":1}'


def test_credentials_and_per_attempt_headers_are_not_kept(tmp_path: Path) -> None:
    """Authorization, Cookie, Proxy-Authorization, user-named headers and the URL's password
    stay out; the key, content type and other headers are kept for the resend."""
    queue = DeadLetterQueue(SQLiteStore(tmp_path / "dead.sqlite3"), secret_headers=["X-Api-Key"])
    try:
        entry_id = queue.park_error(keyed(), httpx.ReadTimeout("lost"))
        assert entry_id is not None
        entry = queue.get(entry_id)
        assert entry is not None
        kept = {name.lower() for name, _ in entry.letter.headers}
        assert kept == {"idempotency-key", "x-tenant", "content-type"}
        assert entry.letter.target == "http://127.0.0.1:9/charges?order=1"
        assert SECRET not in repr(entry)
    finally:
        queue.close()


def test_an_error_gets_a_note_naming_the_entry(queue: DeadLetterQueue) -> None:
    """The caller's exception is the original one, with a PEP 678 note saying where it went;
    parked_entry reads the id off the error or the response."""
    error = CircuitOpenError("payments", 3.0)
    entry_id = queue.park_error(keyed(), error)
    assert entry_id is not None
    assert any(f"as entry {entry_id} (breaker_open)" in note for note in error.__notes__)
    assert parked_entry(error) == entry_id
    response = httpx.Response(503)
    other = queue.park_response(keyed(headers={"Idempotency-Key": "k2"}), response)
    assert parked_entry(response) == other != entry_id
    assert parked_entry(httpx.Response(503)) is None
    assert parked_entry(ValueError("not parked")) is None


@pytest.mark.parametrize(
    "request_",
    [
        httpx.Request("POST", "http://127.0.0.1:9/x", json={}),  # no key: not ours to replay
        keyed(extensions={REPLAY_EXTENSION: "7"}),  # a replay: the replay settles it
    ],
)
def test_keyless_requests_and_replays_are_not_parked(
    queue: DeadLetterQueue, request_: httpx.Request
) -> None:
    """Only keyed calls are parked, and never a replay's own request."""
    assert queue.park_error(request_, httpx.ReadTimeout("lost")) is None
    assert queue.park_response(request_, httpx.Response(503)) is None
    assert queue.depth() == Depth(0, 0)


def test_answers_are_not_parked(queue: DeadLetterQueue) -> None:
    """A 201, a 400 or a 422 is an answer the caller can act on."""
    for status in (201, 400, 422):
        assert queue.park_response(keyed(), httpx.Response(status)) is None
    assert queue.park_error(keyed(), ValueError("a bug")) is None
    assert queue.depth() == Depth(0, 0)


def test_an_origin_that_ignores_keys_gets_only_unsent_requests_parked(
    queue: DeadLetterQueue,
) -> None:
    """Without key-honouring, a replay of a maybe-processed request could act twice: only
    refusals and connection failures (never sent) are parked."""
    assert queue.park_error(keyed(), httpx.ReadTimeout("lost"), honours_keys=False) is None
    assert queue.park_response(keyed(), httpx.Response(503), honours_keys=False) is None
    assert queue.park_error(keyed(), httpx.ConnectError("refused"), honours_keys=False)
    assert queue.depth() == Depth(1, 0)


def test_bodies_that_cannot_be_kept_are_noted(queue: DeadLetterQueue) -> None:
    """A streamed body or one over max_body is not parked, and the note says why."""
    streamed = keyed(content=iter([b"a", b"b"]))
    error = httpx.ReadTimeout("lost")
    assert queue.park_error(streamed, error) is None
    assert any("stream" in note for note in error.__notes__)
    small = DeadLetterQueue(queue.store, max_body=4)
    error = httpx.ReadTimeout("lost")
    assert small.park_error(keyed(), error) is None
    assert any("max_body=4" in note for note in error.__notes__)


def test_what_could_not_be_read_back_is_not_kept(queue: DeadLetterQueue) -> None:
    """A header longer than a store reads back (MAX_TEXT characters) is not parked, and the
    note says why, rather than kept as an entry no replay could read. (httpx refuses such
    URLs itself.)"""
    error = httpx.ReadTimeout("lost")
    assert queue.park_error(keyed(headers={"X-Pad": "x" * (MAX_TEXT + 1)}), error) is None
    assert any(f"over {MAX_TEXT} characters" in note for note in error.__notes__)
    assert queue.park_error(keyed(headers={"X-Pad": "x" * MAX_TEXT}), error) is not None


def test_a_failing_store_is_noted_and_logged_once(
    queue: DeadLetterQueue, caplog: pytest.LogCaptureFixture
) -> None:
    """A store that fails never raises into the call: each error gets a note, the log one
    warning per outage (the exception's class only), and recovery is logged."""
    queue.store.close()  # every step now fails
    errors = [httpx.ReadTimeout("lost"), httpx.ReadTimeout("lost")]
    with caplog.at_level(logging.WARNING, logger="resilience"):
        for error in errors:
            assert queue.park_error(keyed(), error) is None
        assert queue.park_response(keyed(), httpx.Response(503)) is None
    assert all(any("its store failed" in n for n in e.__notes__) for e in errors)
    warnings = [r for r in caplog.records if "store failed" in r.getMessage()]
    assert len(warnings) == 1 and SECRET not in caplog.text


def test_parking_emits_an_event(queue: DeadLetterQueue) -> None:
    """Each parked call emits DeadLetterRecorded with the queue's name, the id and why."""
    with EventRecorder() as recorder:
        entry_id = queue.park_error(keyed(), httpx.ConnectError("refused"))
    assert recorder.events == [DeadLetterRecorded("payments", str(entry_id), "unreachable")]


def test_the_async_steps_park_the_same(queue: DeadLetterQueue) -> None:
    """park_response_async / park_error_async keep what their sync twins keep."""

    async def main() -> tuple[str | None, str | None, httpx.Response]:
        response = httpx.Response(409)
        first = await queue.park_response_async(keyed(), response)
        error = httpx.ReadTimeout("lost")
        second = await queue.park_error_async(
            keyed(headers={"Idempotency-Key": '"order-2"'}), error
        )
        return first, second, response

    first, second, response = asyncio.run(main())
    assert response.extensions[ENTRY_EXTENSION] == first
    assert first is not None and second is not None
    assert queue.depth() == Depth(2, 0)


@pytest.mark.parametrize(
    ("option", "value", "kind"),
    [
        ("max_body", -1, ValueError),
        ("max_replays", 0, ValueError),
        ("secret_headers", "X-Api-Key", TypeError),
        ("secret_headers", [""], ValueError),
        ("store", object(), TypeError),
    ],
)
def test_queue_options_are_checked(
    queue: DeadLetterQueue, option: str, value: object, kind: type[Exception]
) -> None:
    """Bad options fail at construction, naming the parameter."""
    options: dict[str, Any] = {"store": queue.store, option: value}
    with pytest.raises(kind, match=option):
        DeadLetterQueue(**options)


@pytest.mark.redis
def test_a_redis_outage_never_breaks_the_call(redis_server: Any) -> None:
    """Redis stopped while a call is parked: the caller's error carries a note instead, through
    a client that tries once (the store's twin of a retrying client); once Redis is back (empty,
    no persistence), parking works again by itself."""
    import redis

    client = redis.Redis(
        host="127.0.0.1", port=redis_server.port, socket_timeout=0.5, socket_connect_timeout=0.5
    )  # redis-py retries failed commands by default for clients built like this
    store = RedisStreamStore(client, name="outage")
    assert store._client is not client
    queue = DeadLetterQueue(store)
    try:
        redis_server.stop()
        try:
            error = httpx.ConnectError("refused")
            assert queue.park_error(keyed(), error) is None
            assert any("its store failed (ConnectionError)" in n for n in error.__notes__)
        finally:
            redis_server.start()
        assert queue.park_error(keyed(), httpx.ConnectError("refused")) is not None
        assert queue.depth() == Depth(1, 0)
    finally:
        queue.close()
        client.close()


def test_the_default_store_is_one_sqlite_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no store, the queue keeps a SQLite file at $RESILIENCE_DEAD_LETTERS, else under
    $XDG_STATE_HOME/resilience/ (directories made as needed)."""
    monkeypatch.delenv("RESILIENCE_DEAD_LETTERS", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert default_path() == tmp_path / "state" / "resilience" / "dead-letters.sqlite3"
    monkeypatch.setenv("RESILIENCE_DEAD_LETTERS", str(tmp_path / "named" / "dl.sqlite3"))
    queue = DeadLetterQueue()
    try:
        assert queue.park_error(keyed(), httpx.ConnectError("refused")) is not None
    finally:
        queue.close()
    assert (tmp_path / "named" / "dl.sqlite3").is_file()
