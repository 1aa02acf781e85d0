"""Dead-letter telemetry: counters for recorded, replayed, succeeded and parked entries, the
queue's depth as an observable gauge, log levels, and nothing secret in any of them."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from resilience.deadletter import DeadLetterQueue, SQLiteStore, replay
from resilience.instrumentation import event_name, instrument, log_events

SECRET = "Bearer do-not-leak"


class Meters:
    """An SDK meter provider that keeps its points in memory."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.provider = MeterProvider(metric_readers=[self.reader])

    def points(self, metric: str) -> dict[tuple[Any, ...], Any]:
        """The points of ``metric``: attributes (policy excluded, sorted) -> value."""
        data = self.reader.get_metrics_data()
        found: dict[tuple[Any, ...], Any] = {}
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric_data in scope.metrics:
                    if metric_data.name != metric:
                        continue
                    for point in metric_data.data.data_points:
                        labels = dict(point.attributes)
                        if labels.pop("resilience.policy") == "telemetry":
                            found[tuple(sorted(labels.values()))] = point.value
        return found


@pytest.fixture
def meters() -> Iterator[Meters]:
    made = Meters()
    yield made
    made.provider.shutdown()


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[DeadLetterQueue]:
    dead = DeadLetterQueue(SQLiteStore(tmp_path / "dead.sqlite3", name="telemetry"), max_replays=1)
    yield dead
    dead.close()


def fill(queue: DeadLetterQueue) -> None:
    """Three parked entries: two calls (one whose handler will fail) and one HTTP request."""
    for name in ("ok", "bad"):
        queue.park_call(name, (1,), {}, None, RuntimeError("down"))
    request = httpx.Request(
        "POST", "http://127.0.0.1:9/x", headers={"Idempotency-Key": "k", "Authorization": SECRET}
    )
    queue.park_error(request, httpx.ConnectError("refused"))


def bad(n: int) -> None:
    raise RuntimeError("still down")


def test_counters_and_depth_follow_the_queue(meters: Meters, queue: DeadLetterQueue) -> None:
    """Recorded by why, replayed by outcome, succeeded, parked; the depth gauge reads the
    store at collection time."""
    undo = instrument(meter_provider=meters.provider)
    try:
        fill(queue)
        summary = replay(None, queue, handlers={"ok": lambda n: None, "bad": bad})
    finally:
        undo()
    assert (summary.succeeded, summary.parked, summary.skipped) == (1, 1, 1)
    assert meters.points("resilience.dead_letter.recorded") == {
        ("failed",): 2, ("unreachable",): 1,
    }  # fmt: skip
    assert meters.points("resilience.dead_letter.replayed") == {
        ("succeeded",): 1, ("parked",): 1,
    }  # fmt: skip
    assert meters.points("resilience.dead_letter.succeeded") == {(): 1}
    assert meters.points("resilience.dead_letter.parked") == {(): 1}
    assert meters.points("resilience.dead_letter.depth") == {("ready",): 1, ("parked",): 1}


def test_a_closed_store_drops_out_of_the_gauge(meters: Meters, queue: DeadLetterQueue) -> None:
    """A store that cannot answer reports no depth, and the collection still succeeds."""
    undo = instrument(meter_provider=meters.provider)
    try:
        fill(queue)
        queue.close()
        assert meters.points("resilience.dead_letter.depth") == {}
    finally:
        undo()


def test_events_are_named_and_logged_at_their_levels(
    queue: DeadLetterQueue, caplog: pytest.LogCaptureFixture
) -> None:
    """Parked for good is a WARNING (someone has to look); the rest is DEBUG; no credential
    reaches a log record."""
    stop = log_events()
    try:
        with caplog.at_level(logging.DEBUG, logger="resilience"):
            fill(queue)
            replay(None, queue, handlers={"ok": lambda n: None, "bad": bad})
    finally:
        stop()
    levels = {
        record.resilience_event: record.levelno  # type: ignore[attr-defined]
        for record in caplog.records
        if hasattr(record, "resilience_event")
    }
    assert levels == {
        "resilience.dead_letter.recorded": logging.DEBUG,
        "resilience.dead_letter.replayed": logging.DEBUG,
        "resilience.dead_letter.succeeded": logging.DEBUG,
        "resilience.dead_letter.parked": logging.WARNING,
    }
    assert "do-not-leak" not in caplog.text


def test_event_names_are_stable() -> None:
    """Span event names are the documented ones, not class names."""
    from resilience.deadletter import DeadLetterRecorded

    assert event_name(DeadLetterRecorded("q", "1", "unknown")) == "resilience.dead_letter.recorded"
