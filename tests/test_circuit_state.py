"""The breaker's sans-IO state machine: admit and record given ``now``, exact and instant."""

from __future__ import annotations

import pytest

from resilience._circuit.state import REJECTED, CircuitState, StateMachine
from resilience._circuit.window import CountWindow, TimeWindow

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN


def machine(
    *,
    failure_rate: float = 0.5,
    minimum_calls: int = 4,
    size: int = 4,
    open_for: float = 10.0,
    half_open_calls: int = 2,
    slow_call_rate: float | None = None,
) -> StateMachine:
    return StateMachine(
        CountWindow(size),
        failure_rate=failure_rate,
        minimum_calls=minimum_calls,
        open_for=open_for,
        half_open_calls=half_open_calls,
        slow_call_rate=slow_call_rate,
    )


def outcome(sm: StateMachine, failed: bool, now: float = 0.0, slow: bool = False) -> None:
    """Admit one call at ``now`` and record its outcome at once."""
    permit = sm.admit(now)
    assert permit != REJECTED
    sm.record(permit, failed, slow, now)


def trip(sm: StateMachine, now: float = 0.0) -> None:
    """Fail calls until the machine opens."""
    while sm.state is CLOSED:
        outcome(sm, True, now)


def to_half_open(sm: StateMachine, now: float = 0.0) -> float:
    """Open the machine at ``now``; return the time at which it turns half-open."""
    trip(sm, now)
    return now + sm.open_for


def test_closed_admits_every_call_with_the_closed_permit() -> None:
    """A closed machine admits everything with the lock-free ``closed_permit``."""
    sm = machine()
    permits = {sm.admit(float(now)) for now in range(100)}
    assert permits == {sm.closed_permit} and sm.closed_permit is not None
    assert sm.closed_permit >= 0 and not sm.closed_permit & 1
    assert sm.changes == []


@pytest.mark.parametrize(
    ("failures", "successes", "state"),
    [(3, 0, CLOSED), (4, 0, OPEN), (2, 2, OPEN), (1, 3, CLOSED)],
)
def test_opens_once_minimum_calls_reach_the_failure_rate(
    failures: int, successes: int, state: CircuitState
) -> None:
    """minimum_calls 4, rate 0.5: 3 failures wait, 4 open, 2 of 4 open, 1 of 4 does not."""
    sm = machine()
    for _ in range(successes):
        outcome(sm, False)
    for _ in range(failures):
        outcome(sm, True)
    assert sm.state is state


def test_opening_bumps_the_generation_clears_the_window_and_logs_the_change() -> None:
    """A transition bumps generation, empties the window, stamps opened_at and logs (old, new)."""
    sm = machine()
    for _ in range(4):
        outcome(sm, True, now=7.0)
    assert (sm.state, sm.generation, sm.opened_at) == (OPEN, 1, 7.0)
    assert (sm.window.calls, sm.window.failures) == (0, 0)
    assert sm.closed_permit is None
    assert sm.changes == [(CLOSED, OPEN)]


def test_retry_after_never_exceeds_open_for() -> None:
    """Right after opening, retry_after is open_for, not an ulp more: opened at 5.101380514788434,
    (opened_at + 5.0) - now rounds to 5.000000000000001."""
    sm = machine(open_for=5.0)
    trip(sm, now=5.101380514788434)
    assert sm.retry_after(5.101380514788434) == 5.0


def test_open_rejects_until_open_for_then_admits_a_trial() -> None:
    """Open rejects with the time left as retry_after; at open_for exactly it admits a trial."""
    sm = machine(open_for=10.0)
    trip(sm, now=100.0)
    assert sm.admit(103.0) == REJECTED
    assert sm.retry_after(103.0) == 7.0
    assert sm.admit(109.999) == REJECTED
    assert sm.state is OPEN
    permit = sm.admit(110.0)
    assert permit != REJECTED and permit & 1  # a trial
    assert sm.state is HALF_OPEN
    assert sm.retry_after(110.0) == 0.0
    assert sm.changes == [(CLOSED, OPEN), (OPEN, HALF_OPEN)]


def test_half_open_admits_exactly_half_open_calls_concurrent_trials() -> None:
    """Half-open admits half_open_calls trials at once and rejects the rest while they run."""
    sm = machine(half_open_calls=3)
    now = to_half_open(sm)
    trials = [sm.admit(now) for _ in range(3)]
    assert REJECTED not in trials
    assert [sm.admit(now) for _ in range(5)] == [REJECTED] * 5
    assert sm.trials_in_flight == 3
    sm.record(trials[0], False, False, now)  # one passes: its slot is free again
    assert (sm.state, sm.trials_in_flight) == (HALF_OPEN, 2)
    assert sm.admit(now) != REJECTED
    assert sm.admit(now) == REJECTED


def test_release_frees_a_trial_slot_without_an_outcome() -> None:
    """A released trial frees its slot and counts neither as a pass nor as a failure."""
    sm = machine(half_open_calls=1)
    now = to_half_open(sm)
    first = sm.admit(now)
    assert sm.admit(now) == REJECTED
    sm.release(first)
    assert (sm.state, sm.trials_in_flight, sm.trials_passed) == (HALF_OPEN, 0, 0)
    second = sm.admit(now)
    assert second != REJECTED
    sm.record(second, False, False, now)
    assert sm.state is CLOSED


def test_release_of_a_closed_permit_changes_nothing() -> None:
    """Releasing a permit from the closed state leaves window and state alone."""
    sm = machine()
    outcome(sm, True)
    sm.release(sm.admit(1.0))
    assert (sm.state, sm.window.calls, sm.window.failures) == (CLOSED, 1, 1)


@pytest.mark.parametrize(("failed", "slow"), [(True, False), (False, True)])
def test_one_failing_or_slow_trial_reopens_at_once(failed: bool, slow: bool) -> None:
    """A failed (or slow, when slow calls count) trial reopens the machine at the trial's end."""
    sm = machine(half_open_calls=3, slow_call_rate=1.0)
    now = to_half_open(sm)
    good, bad = sm.admit(now), sm.admit(now)
    sm.record(good, False, False, now + 1)
    sm.record(bad, failed, slow, now + 2)
    assert (sm.state, sm.opened_at) == (OPEN, now + 2)
    assert sm.retry_after(now + 2) == sm.open_for


def test_a_slow_trial_passes_when_slow_calls_are_not_configured() -> None:
    """Without slow_call_rate, slowness means nothing, also for trials."""
    sm = machine(half_open_calls=1, slow_call_rate=None)
    now = to_half_open(sm)
    sm.record(sm.admit(now), False, True, now)
    assert sm.state is CLOSED


def test_all_trials_passing_closes_with_a_fresh_closed_permit() -> None:
    """half_open_calls passing trials close the machine; the closed permit is of the new state."""
    sm = machine(half_open_calls=2)
    now = to_half_open(sm)
    first, second = sm.admit(now), sm.admit(now)
    sm.record(first, False, False, now)
    assert sm.state is HALF_OPEN
    sm.record(second, False, False, now)
    assert sm.state is CLOSED
    assert sm.closed_permit == sm.admit(now)
    assert sm.closed_permit is not None and sm.closed_permit >> 1 == sm.generation
    assert (sm.window.calls, sm.trials_in_flight, sm.trials_passed) == (0, 0, 0)
    assert sm.changes[-2:] == [(OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]


def test_late_closed_results_do_not_count_in_a_later_state() -> None:
    """Results of permits issued before a transition are ignored: one opening, not many."""
    sm = machine(minimum_calls=2, size=2)
    permits = [sm.admit(0.0) for _ in range(50)]
    for permit in permits:
        sm.record(permit, True, False, 0.0)
    assert sm.changes == [(CLOSED, OPEN)]
    assert sm.generation == 1


def test_a_late_trial_result_neither_closes_nor_frees_a_newer_trial_slot() -> None:
    """A trial from an earlier half-open period has no say in the current one."""
    sm = machine(half_open_calls=1, open_for=5.0)
    now = to_half_open(sm)
    old_trial = sm.admit(now)
    sm.force(OPEN, now)  # reopened by hand while the trial runs
    new_trial = sm.admit(now + 5.0)
    assert new_trial != REJECTED
    sm.record(old_trial, False, False, now + 6.0)  # would close it if it counted
    assert (sm.state, sm.trials_in_flight) == (HALF_OPEN, 1)
    sm.release(old_trial)
    assert sm.trials_in_flight == 1
    assert sm.admit(now + 6.0) == REJECTED
    sm.record(new_trial, True, False, now + 7.0)
    assert sm.state is OPEN


def test_late_closed_result_after_a_close_by_hand_is_ignored() -> None:
    """A closed-state permit from before open()/close() does not count in the new closed state."""
    sm = machine(minimum_calls=1, size=1)
    early = sm.admit(0.0)
    sm.force(OPEN, 0.0)
    sm.force(CLOSED, 0.0)
    sm.record(early, True, False, 0.0)
    assert (sm.state, sm.window.calls) == (CLOSED, 0)


def test_slow_calls_open_at_the_slow_call_rate() -> None:
    """With slow_call_rate set, the share of slow calls opens the machine like failures do."""
    sm = machine(failure_rate=1.0, slow_call_rate=0.5)
    outcome(sm, False, slow=True)
    outcome(sm, False)
    outcome(sm, False)
    assert sm.state is CLOSED
    outcome(sm, False, slow=True)
    assert sm.state is OPEN


def test_slow_calls_are_ignored_without_a_slow_call_rate() -> None:
    """With slow_call_rate None, slow calls never open the machine."""
    sm = machine(failure_rate=1.0, slow_call_rate=None)
    for _ in range(8):
        outcome(sm, False, slow=True)
    assert sm.state is CLOSED


def test_poll_turns_an_expired_open_state_half_open() -> None:
    """poll() reports open until open_for has passed, then moves to half-open (once)."""
    sm = machine(open_for=10.0)
    trip(sm, now=50.0)
    assert sm.poll(59.0) is OPEN
    assert sm.poll(60.0) is HALF_OPEN
    assert sm.poll(61.0) is HALF_OPEN
    assert sm.changes == [(CLOSED, OPEN), (OPEN, HALF_OPEN)]


def test_force_moves_by_hand_and_forcing_the_same_state_is_no_transition() -> None:
    """open() restarts an open period and close() clears a closed window, without a change."""
    sm = machine(minimum_calls=4)
    outcome(sm, True)
    outcome(sm, True)
    generation = sm.generation
    sm.force(CLOSED, 1.0)
    assert (sm.window.calls, sm.generation, sm.changes) == (0, generation, [])
    sm.force(OPEN, 2.0)
    assert (sm.state, sm.opened_at, sm.changes) == (OPEN, 2.0, [(CLOSED, OPEN)])
    sm.force(OPEN, 5.0)
    assert (sm.opened_at, sm.generation, len(sm.changes)) == (5.0, generation + 1, 1)
    assert sm.admit(14.0) == REJECTED  # the open period restarted at 5.0
    sm.force(CLOSED, 15.0)
    assert sm.state is CLOSED and sm.closed_permit is not None
    assert sm.changes == [(CLOSED, OPEN), (OPEN, CLOSED)]


def test_a_time_window_machine_forgets_old_failures() -> None:
    """With a time window, failures older than the window do not help reach the rate."""
    sm = StateMachine(
        TimeWindow(10.0),
        failure_rate=0.5,
        minimum_calls=4,
        open_for=10.0,
        half_open_calls=1,
        slow_call_rate=None,
    )
    for now in (0.5, 1.5, 2.5):
        outcome(sm, True, now)
    outcome(sm, False, 13.0)  # the three failures have left the window (else: 3 of 4)
    outcome(sm, False, 13.0)
    outcome(sm, True, 13.0)
    assert (sm.state, sm.window.calls, sm.window.failures) == (CLOSED, 3, 1)
    outcome(sm, True, 13.0)
    assert sm.state is OPEN  # 2 of 4
