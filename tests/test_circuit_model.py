"""Model-based test: random operation sequences against a small reference state machine.

The reference is written from the rules in ``resilience._circuit.state``'s docstring, as plainly
as possible: outcomes are a list, trials a counter, the clock a float. Two variants: a count
window (the last WINDOW_CALLS outcomes) and a time window. The time window is made exact by
keeping every time a multiple of 1/8 s and every slice 0.25 s wide, so the documented rule
"an outcome counts until its slice has fully left the window" can be evaluated without rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from resilience import CircuitBreaker, CircuitOpenError
from resilience.testing import FakeClock

RATE, SLOW_RATE, MINIMUM, OPEN_FOR, TRIALS, SLOW = 0.6, 0.5, 3, 3.0, 2, 1.0
WINDOW_CALLS = 5
WINDOW_SECONDS, SLICES = 2.5, 10  # the breaker's time windows have 10 slices
SLICE = WINDOW_SECONDS / SLICES  # 0.25 s: exact in binary

Outcome = tuple[float, bool, bool]  # (time, failed, slow)
Permit = tuple[int, bool]  # (generation, trial)


@dataclass
class Model:
    """The breaker's rules, restated with no cleverness."""

    count_window: bool
    state: str = "closed"
    generation: int = 0
    outcomes: list[Outcome] = field(default_factory=list)
    opened_at: float = 0.0
    trials: int = 0
    passed: int = 0
    rejections: int = 0
    transitions: list[tuple[str, str]] = field(default_factory=list)

    def live(self, now: float) -> list[Outcome]:
        """The outcomes the window holds at ``now``."""
        if self.count_window:
            return self.outcomes[-WINDOW_CALLS:]
        current = math.floor(now / SLICE)
        return [o for o in self.outcomes if current - math.floor(o[0] / SLICE) <= SLICES]

    def move(self, state: str, now: float) -> None:
        self.transitions.append((self.state, state))
        self.state, self.generation = state, self.generation + 1
        self.outcomes, self.trials, self.passed = [], 0, 0
        if state == "open":
            self.opened_at = now

    def poll(self, now: float) -> str:
        if self.state == "open" and now - self.opened_at >= OPEN_FOR:
            self.move("half_open", now)
        return self.state

    def admit(self, now: float) -> Permit | None:
        state = self.poll(now)
        if state == "closed":
            return (self.generation, False)
        if state == "half_open" and self.trials < TRIALS:
            self.trials += 1
            return (self.generation, True)
        self.rejections += 1
        return None

    def record(self, permit: Permit, failed: bool, slow: bool, now: float) -> None:
        generation, trial = permit
        if generation != self.generation:
            return  # late: from before the last transition
        if trial:
            self.trials -= 1
            if failed or slow:
                self.move("open", now)
            else:
                self.passed += 1
                if self.passed == TRIALS:
                    self.move("closed", now)
            return
        self.outcomes.append((now, failed, slow))
        live = self.live(now)
        failures = sum(1 for o in live if o[1])
        slow_calls = sum(1 for o in live if o[2])
        if len(live) >= MINIMUM and (
            failures / len(live) >= RATE or slow_calls / len(live) >= SLOW_RATE
        ):
            self.move("open", now)

    def release(self, permit: Permit) -> None:
        if permit == (self.generation, True):
            self.trials -= 1

    def force_open(self, now: float) -> None:
        if self.state == "open":
            self.opened_at = now
        else:
            self.move("open", now)

    def force_close(self, now: float) -> None:
        if self.state == "closed":
            self.outcomes = []
        else:
            self.move("closed", now)


# Admissions, outcomes and time dominate, so sequences reach every state and full trial slots;
# opening and closing by hand are rarer, or they would cut every run short.
KINDS = ["admit"] * 10 + ["fail"] * 4 + ["succeed"] * 6 + ["slow"] * 2 + ["advance"] * 6
KINDS += ["release"] * 2 + ["open", "close", "state", "metrics"]
operations = st.lists(
    st.tuples(
        st.sampled_from(KINDS),
        st.integers(0, 3),  # which held permit an outcome applies to: 0 is the newest
        st.sampled_from([1, 2, 4, 8, 20, 24, 32]),  # eighths of a second to advance
    ),
    min_size=20,
    max_size=80,
)


def run(steps: list[tuple[str, int, int]], count_window: bool) -> None:
    clock = FakeClock(start=1000.0)
    breaker = CircuitBreaker(
        failure_rate=RATE,
        minimum_calls=MINIMUM,
        window=WINDOW_SECONDS,
        window_calls=WINDOW_CALLS if count_window else None,
        open_for=OPEN_FOR,
        half_open_calls=TRIALS,
        slow_call_duration=SLOW,
        slow_call_rate=SLOW_RATE,
        clock=clock,
    )
    transitions: list[tuple[str, str]] = []
    breaker.add_listener(lambda event: transitions.append((event.old, event.new)))
    model = Model(count_window)
    held: list[tuple[int, Permit]] = []  # (breaker permit, model permit)
    for step, (operation, index, eighths) in enumerate(steps):
        now = clock.now()
        if operation == "advance":
            clock.advance(eighths / 8)
        elif operation == "admit":
            expected = model.admit(now)
            rejected: CircuitOpenError | None = None
            try:
                permit = breaker._admit()
            except CircuitOpenError as rejection:
                rejected = rejection
            if expected is None:
                assert rejected is not None, step
                left = OPEN_FOR - (now - model.opened_at) if model.state == "open" else 0.0
                assert rejected.retry_after == left, step
            else:
                assert rejected is None, step
                assert (permit >> 1, bool(permit & 1)) == expected, step
                held.append((permit, expected))
        elif operation in ("succeed", "fail", "slow", "release") and held:
            permit, expected = held.pop(-1 - index % len(held))
            if operation == "release":
                breaker._release(permit)
                model.release(expected)
            else:
                failed, slow = operation == "fail", operation == "slow"
                breaker._record(permit, failed, now - SLOW if slow else now)
                model.record(expected, failed, slow, now)
        elif operation == "open":
            breaker.open()
            model.force_open(now)
        elif operation == "close":
            breaker.close()
            model.force_close(now)
        elif operation == "state":
            assert breaker.state.value == model.poll(now), step
        elif operation == "metrics":
            metrics = breaker.metrics
            live = model.live(now)
            assert metrics.state.value == model.poll(now), step
            assert (metrics.calls, metrics.failures, metrics.slow_calls) == (
                len(live),
                sum(1 for o in live if o[1]),
                sum(1 for o in live if o[2]),
            ), step
            assert metrics.total_rejections == model.rejections, step
        machine = breaker._machine
        assert machine.state.value == model.state, step
        assert machine.trials_in_flight == model.trials, step
        assert transitions == model.transitions, step
        if count_window:  # a time window's totals are only as fresh as its last update
            live = model.live(now)
            assert (machine.window.calls, machine.window.failures, machine.window.slow) == (
                len(live),
                sum(1 for o in live if o[1]),
                sum(1 for o in live if o[2]),
            ), step


@settings(max_examples=150, deadline=None)
@given(operations)
def test_count_window_breaker_agrees_with_the_reference_model(
    steps: list[tuple[str, int, int]],
) -> None:
    """With a count window, every admission, rejection, state and count matches the model."""
    run(steps, count_window=True)


@settings(max_examples=150, deadline=None)
@given(operations)
def test_time_window_breaker_agrees_with_the_reference_model(
    steps: list[tuple[str, int, int]],
) -> None:
    """With a time window, every admission, rejection, state and count matches the model."""
    run(steps, count_window=False)
