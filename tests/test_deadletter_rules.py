"""The dead-letter queue's sans-IO rules: which endings are parked, what a replay's answer
means, and when a replay run stops. Exact, no I/O."""

from __future__ import annotations

import httpx
import pytest

from resilience import BulkheadFullError, CircuitOpenError, DeadlineExceededError, RateLimitedError
from resilience.deadletter._rules import (
    Action,
    ReplayRun,
    dead_error,
    dead_status,
    replay_error,
    replay_status,
)


@pytest.mark.parametrize(
    ("status", "why"),
    [(503, "exhausted"), (500, "exhausted"), (429, "exhausted"), (408, "exhausted"),
     (504, "exhausted"), (409, "in_progress"), (200, None), (201, None), (400, None),
     (404, None), (422, None), (501, None)],
)  # fmt: skip
def test_statuses_that_leave_the_outcome_open_are_parked(status: int, why: str | None) -> None:
    """Retryable statuses and a keyed 409 are parked; answers (2xx, 4xx, 501) are not."""
    verdict = dead_status(status)
    assert (verdict[0] if verdict else None) == why


@pytest.mark.parametrize(
    ("error", "why"),
    [
        (CircuitOpenError("b", 1.0), "breaker_open"),
        (BulkheadFullError("b", 1), "rejected"),
        (RateLimitedError("r", 1.0), "rejected"),
        (DeadlineExceededError("deadline", 1.0), "deadline"),
        (httpx.ConnectError("refused"), "unreachable"),
        (httpx.ConnectTimeout("slow"), "unreachable"),
        (httpx.ReadTimeout("lost"), "unknown"),
        (httpx.RemoteProtocolError("dropped"), "unknown"),
        (httpx.ReadError("reset"), "unknown"),
        (httpx.UnsupportedProtocol("ftp"), None),
        (httpx.LocalProtocolError("bad header"), None),
        (ValueError("bug"), None),
    ],
)
def test_errors_are_sorted_by_what_they_leave_open(error: BaseException, why: str | None) -> None:
    """Refusals, lost connections and timeouts are parked; programming errors are not."""
    verdict = dead_error(error)
    assert (verdict[0] if verdict else None) == why


def test_a_parked_reason_names_the_class_not_the_message() -> None:
    """Messages may quote URLs or payloads; the reason kept names the exception class only."""
    verdict = dead_error(httpx.ReadTimeout("https://user:secret@bank/charges"))
    assert verdict is not None and "secret" not in verdict[1] and "ReadTimeout" in verdict[1]


@pytest.mark.parametrize(
    ("status", "replayed", "step"),
    [(201, False, "done"), (200, False, "done"), (500, True, "done"), (409, True, "done"),
     (422, False, "park"), (503, False, "again"), (409, False, "again"), (400, False, "again")],
)  # fmt: skip
def test_what_a_replay_answer_means(status: int, replayed: bool, step: str) -> None:
    """2xx or a server replay finishes; 422 parks; anything else is a failed replay."""
    assert replay_status(status, replayed)[0] == step


def test_a_refusal_by_the_replaying_client_is_no_replay() -> None:
    """An open breaker (or full bulkhead, rate limit) refuses; a timeout is a failed replay."""
    assert replay_error(CircuitOpenError("b", 1.0))[0] == "refused"
    assert replay_error(RateLimitedError("r", 1.0))[0] == "refused"
    assert replay_error(httpx.ReadTimeout("t"))[0] == "again"


def run(**options: object) -> ReplayRun:
    defaults: dict[str, object] = {
        "started": 100.0, "limit": None, "max_time": None, "stop_after_failures": None,
        "max_replays": 3,
    }  # fmt: skip
    return ReplayRun(**{**defaults, **options})  # type: ignore[arg-type]


def test_a_run_is_bounded_by_count() -> None:
    """``limit`` counts replayed entries; the run stops with "limit" when they are done."""
    core = run(limit=2)
    assert core.wanted(100.0) == 2
    core.settle(0, "done", "201")
    assert core.wanted(100.0) == 1
    core.settle(0, "again", "503")
    assert core.wanted(100.0) == 0
    assert core.stopped == "limit"


def test_a_run_is_bounded_by_time() -> None:
    """``max_time`` seconds after ``started`` the run takes no more entries."""
    core = run(max_time=5.0)
    assert core.wanted(104.9) > 0
    assert core.wanted(105.0) == 0
    assert core.stopped == "time"


def test_failed_replays_park_an_entry_after_max_replays() -> None:
    """The ``max_replays``-th failed replay parks the entry; earlier ones put it back."""
    core = run(max_replays=3)
    assert core.settle(0, "again", "503") == Action("retry", "503")
    assert core.settle(1, "again", "503") == Action("retry", "503")
    assert core.settle(2, "again", "503").op == "park"
    assert (core.failed, core.parked) == (2, 1)


def test_a_422_parks_at_once_without_counting_as_an_outage() -> None:
    """A 422 parks on the first replay and resets the failure streak (the server answered)."""
    core = run(stop_after_failures=2)
    core.settle(0, "again", "503")
    assert core.settle(0, "park", "422").op == "park"
    core.settle(0, "again", "503")
    assert core.stopped is None


def test_failures_in_a_row_stop_the_run() -> None:
    """``stop_after_failures`` failed replays in a row stop it; a success resets the count."""
    core = run(stop_after_failures=2)
    core.settle(0, "again", "503")
    core.settle(0, "done", "201")
    core.settle(0, "again", "503")
    assert core.stopped is None
    core.settle(0, "again", "503")
    assert core.stopped == "failures"
    assert core.wanted(100.0) == 0


def test_a_refusal_releases_the_entry_and_stops_the_run() -> None:
    """An open breaker on the replaying client: the entry goes back untried, the run ends."""
    core = run()
    assert core.settle(0, "refused", "CircuitOpenError").op == "release"
    assert core.stopped == "refused"
    assert core.replayed == 0


@pytest.mark.parametrize(
    ("option", "value"),
    [("limit", -1), ("max_time", float("inf")), ("stop_after_failures", 0), ("max_replays", 0)],
)
def test_run_options_are_checked(option: str, value: object) -> None:
    """Bad bounds fail at construction, naming the parameter."""
    with pytest.raises(ValueError, match=option):
        run(**{option: value})
