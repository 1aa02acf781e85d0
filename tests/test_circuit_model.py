"""Model-based test: random operation sequences against a small reference state machine."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from resilience import CircuitBreaker, CircuitOpenError
from resilience.testing import FakeClock

WINDOW, MINIMUM, RATE, OPEN_FOR, TRIALS = 5, 3, 0.6, 10.0, 2


@dataclass
class Model:
    """The breaker's rules, restated as plainly as possible (count window of WINDOW calls)."""

    state: str = "closed"
    generation: int = 0
    outcomes: list[bool] = field(default_factory=list)
    opened_at: float = 0.0
    trials: int = 0
    passed: int = 0

    def move(self, state: str, now: float) -> None:
        self.state, self.generation = state, self.generation + 1
        self.outcomes, self.trials, self.passed = [], 0, 0
        if state == "open":
            self.opened_at = now

    def admit(self, now: float) -> tuple[int, bool] | None:
        if self.state == "closed":
            return (self.generation, False)
        if self.state == "open":
            if now - self.opened_at < OPEN_FOR:
                return None
            self.move("half_open", now)
        if self.trials < TRIALS:
            self.trials += 1
            return (self.generation, True)
        return None

    def record(self, permit: tuple[int, bool], failed: bool, now: float) -> None:
        generation, trial = permit
        if generation != self.generation:
            return
        if trial:
            self.trials -= 1
            if failed:
                self.move("open", now)
            else:
                self.passed += 1
                if self.passed >= TRIALS:
                    self.move("closed", now)
            return
        self.outcomes = [*self.outcomes, failed][-WINDOW:]
        if len(self.outcomes) >= MINIMUM and sum(self.outcomes) / len(self.outcomes) >= RATE:
            self.move("open", now)

    def release(self, permit: tuple[int, bool]) -> None:
        if permit[1] and permit[0] == self.generation:
            self.trials -= 1


# Admissions and outcomes dominate, so sequences reach OPEN, HALF_OPEN and full trial slots.
_KINDS = (
    ["admit"] * 4 + ["fail"] * 3 + ["succeed"] * 2 + ["advance"] * 2 + ["release", "open", "close"]
)
operations = st.lists(
    st.tuples(st.sampled_from(_KINDS), st.integers(0, 7), st.sampled_from([0.5, 3.0, 10.0])),
    min_size=20,
    max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(operations)
def test_breaker_agrees_with_the_reference_model(steps: list[tuple[str, int, float]]) -> None:
    """Every admission, rejection and state of the breaker matches the model, step by step."""
    clock = FakeClock()
    breaker = CircuitBreaker(
        failure_rate=RATE,
        minimum_calls=MINIMUM,
        window_calls=WINDOW,
        open_for=OPEN_FOR,
        half_open_calls=TRIALS,
        clock=clock,
    )
    model = Model()
    held: list[tuple[int, tuple[int, bool]]] = []  # (breaker permit, model permit)
    for operation, index, seconds in steps:
        now = clock.now()
        if operation == "advance":
            clock.advance(seconds)
        elif operation == "admit":
            expected = model.admit(now)
            try:
                permit = breaker._admit()
            except CircuitOpenError:
                assert expected is None
            else:
                assert expected is not None
                assert bool(permit & 1) == expected[1]
                held.append((permit, expected))
        elif operation in ("succeed", "fail", "release") and held:
            permit, expected = held.pop(index % len(held))
            if operation == "release":
                breaker._release(permit)
                model.release(expected)
            else:
                breaker._record(permit, operation == "fail", now)
                model.record(expected, operation == "fail", now)
        elif operation == "open":
            breaker.open()
            if model.state == "open":
                model.opened_at = now
            else:
                model.move("open", now)
        elif operation == "close":
            breaker.close()
            if model.state != "closed":
                model.move("closed", now)
        machine = breaker._machine
        assert machine.state.value == model.state
        assert machine.trials_in_flight == model.trials
        assert machine.window.calls == len(model.outcomes)
        assert machine.window.failures == sum(model.outcomes)
