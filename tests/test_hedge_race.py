"""Hedge's race rules, sans-IO: who starts when, who wins, what is discarded — exact, no I/O."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resilience._hedge.race import Race


class Refused:
    """A value the tests' predicate refuses (a retryable response, say)."""


BAD = Refused()


def race(attempts: int = 3, delay: float = 0.5) -> tuple[Race, list[Any]]:
    """A race refusing ``Refused`` values, and the list its discarded values go to."""
    discarded: list[Any] = []
    accepts = lambda value: not isinstance(value, Refused)  # noqa: E731
    return Race(delay, attempts, accepts, discarded.append), discarded


def test_each_copy_but_the_last_arms_a_timer_for_the_next() -> None:
    """launch() returns the delay until the next copy is due, and None for the last copy."""
    r, _ = race(attempts=3, delay=0.5)
    assert [r.launch(), r.launch(), r.launch()] == [0.5, 0.5, None]
    assert (r.launched, r.running) == (3, 3)


def test_only_the_latest_copys_tick_launches_the_next() -> None:
    """A tick for the copy started last launches the next; a stale one (an earlier copy's, or
    once every copy has started) does not."""
    r, _ = race(attempts=3)
    r.launch()
    assert r.step(1) is True
    r.launch()
    assert r.step(1) is False  # copy 1's timer, firing late
    assert r.step(2) is True
    r.launch()
    assert r.step(3) is False  # no fourth copy


def test_the_first_accepted_value_wins_and_nothing_more_starts() -> None:
    """An accepted value decides the race; a tick after that launches nothing."""
    r, discarded = race()
    r.launch()
    assert r.step((True, "good")) is False
    assert r.decided
    assert r.result() == "good"
    assert r.step(1) is False
    assert discarded == []


def test_a_failed_copy_starts_the_next_at_once() -> None:
    """An exception or a refused value launches the next copy without waiting for the delay."""
    r, _ = race(attempts=3)
    r.launch()
    assert r.step((False, ConnectionError("1"))) is True
    r.launch()
    assert r.step((True, BAD)) is True
    assert not r.decided


def test_when_every_copy_fails_the_first_exception_is_raised() -> None:
    """With no value at all, the first exception is the answer."""
    r, _ = race(attempts=2)
    first = ConnectionError("first")
    r.launch()
    r.step((False, first))
    r.launch()
    r.step((False, ConnectionError("second")))
    assert r.decided
    with pytest.raises(ConnectionError) as caught:
        r.result()
    assert caught.value is first


def test_when_every_copy_fails_the_latest_refused_value_is_returned() -> None:
    """A refused value beats exceptions; each refused value it replaces is discarded."""
    r, discarded = race(attempts=3)
    refused = [Refused(), Refused()]
    r.launch()
    r.step((True, refused[0]))
    r.launch()
    r.step((False, ConnectionError()))
    r.launch()
    r.step((True, refused[1]))
    assert r.decided
    assert r.result() is refused[1]
    assert discarded == [refused[0]]


def test_a_winner_discards_the_refused_value_kept_so_far() -> None:
    """A refused answer held while others raced is discarded when a good one wins."""
    r, discarded = race(attempts=2)
    kept = Refused()
    r.launch()
    r.step((True, kept))
    r.launch()
    r.step((True, "good"))
    assert r.result() == "good"
    assert discarded == [kept]


def test_the_race_waits_for_copies_still_running_once_all_started() -> None:
    """With every copy started, a failure decides nothing while another copy still runs."""
    r, _ = race(attempts=2)
    r.launch()
    r.launch()
    assert r.step((False, ConnectionError())) is False
    assert not r.decided
    assert r.step((True, "late but good")) is False
    assert r.result() == "late but good"


def test_values_after_the_decision_are_discarded_and_errors_dropped() -> None:
    """Outcomes arriving after the race was decided: values discarded, errors and ticks not."""
    r, discarded = race(attempts=3)
    r.launch()
    r.launch()
    r.launch()
    r.step((True, "winner"))
    r.step((True, "loser"))
    r.step((False, ConnectionError()))
    r.late((True, "late"))
    r.late(2)
    assert discarded == ["loser", "late"]
    assert r.result() == "winner"


def test_abandoning_discards_the_kept_value_once() -> None:
    """A caller that stops waiting leaves nothing undisposed: the kept value is discarded, once;
    abandoning a decided race changes nothing."""
    r, discarded = race(attempts=2)
    kept = Refused()
    r.launch()
    r.step((True, kept))
    r.abandon()
    r.abandon()
    assert r.decided
    assert discarded == [kept]
    decided, discarded_after = race(attempts=1)
    decided.launch()
    decided.step((True, BAD))
    decided.abandon()
    assert decided.result() == BAD  # all copies failed: the refused value is still the answer
    assert discarded_after == []


# -- a model check: every value is returned or discarded, exactly once -----------------------


class Value:
    """A value a copy returns; ``good`` or refused."""

    def __init__(self, good: bool) -> None:
        self.good = good


@given(
    attempts=st.integers(1, 4),
    script=st.lists(st.sampled_from(["tick", "good", "bad", "error"]), max_size=12),
    stop_at=st.integers(0, 12),
)
def test_every_value_is_returned_or_discarded_exactly_once(
    attempts: int, script: list[str], stop_at: int
) -> None:
    """Driven as a shell drives it — ticks and outcomes of running copies until the race is
    decided or the caller gives up (at ``stop_at``), then the outcomes of the copies still
    running — each value a copy returns ends in exactly one place, the answer or the discards;
    no more than ``attempts`` copies start."""
    discarded: list[Value] = []
    r = Race(0.1, attempts, lambda value: value.good, discarded.append)
    values: list[Value] = []

    def answer(event: str) -> Any:
        if event == "error":
            return (False, ConnectionError())
        values.append(Value(event == "good"))
        return (True, values[-1])

    r.launch()
    for index, event in enumerate(script):
        if r.decided or index == stop_at:
            break
        if event == "tick":
            launch = r.step(r.launched)
        elif r.running:
            launch = r.step(answer(event))
        else:
            continue  # nothing running could answer
        if launch:
            r.launch()
    answered = r.decided
    r.abandon()
    while r.running:  # the copies left behind answer after all
        assert r.step(answer("good")) is False
    assert r.launched <= attempts
    returned: list[Value] = []
    if answered:
        try:
            returned.append(r.result())
        except ConnectionError:
            pass
    ends = returned + discarded
    assert sorted(map(id, ends)) == sorted(map(id, values))
