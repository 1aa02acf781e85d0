"""CircuitBreaker: thresholds, windows, slow calls, half-open trials, listeners, validation."""

from __future__ import annotations

import asyncio
import threading

import pytest

from resilience import (
    CallRejected,
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    CircuitStateChanged,
)
from resilience.testing import EventRecorder, FakeClock
from tests.conftest import Colour, Script


def fail(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        with pytest.raises(ConnectionError):
            breaker.call(Script([ConnectionError("down")]))


def succeed(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        assert breaker.call(Script(["ok"])) == "ok"


def test_stays_closed_before_minimum_calls(clock: FakeClock) -> None:
    """Nine failures out of nine do not open a breaker that needs ten calls."""
    breaker = CircuitBreaker(minimum_calls=10, clock=clock)
    fail(breaker, 9)
    assert breaker.state is CircuitState.CLOSED
    fail(breaker)
    assert breaker.state is CircuitState.OPEN


@pytest.mark.parametrize(("failures", "opens"), [(5, True), (4, False)])
def test_opens_exactly_at_the_failure_rate(clock: FakeClock, failures: int, opens: bool) -> None:
    """With failure_rate 0.5 and ten calls, 5 failures open it and 4 do not."""
    breaker = CircuitBreaker(failure_rate=0.5, minimum_calls=10, clock=clock)
    succeed(breaker, 10 - failures)
    fail(breaker, failures)
    assert breaker.state is (CircuitState.OPEN if opens else CircuitState.CLOSED)


def test_success_reaching_minimum_calls_can_open(clock: FakeClock) -> None:
    """The rate is checked on every outcome: a success that completes the window can open it."""
    breaker = CircuitBreaker(failure_rate=0.5, minimum_calls=4, clock=clock)
    fail(breaker, 3)
    succeed(breaker)
    assert breaker.state is CircuitState.OPEN


def test_open_breaker_rejects_without_calling(colour: Colour, clock: FakeClock) -> None:
    """An open breaker raises CircuitOpenError with its name and retry_after, not calling."""
    breaker = CircuitBreaker("payments", minimum_calls=2, open_for=30.0, clock=clock)
    script = Script([ConnectionError("down")])
    call = colour.wrap(breaker, script)
    for _ in range(2):
        with pytest.raises(ConnectionError):
            call()
    clock.advance(12.5)
    with EventRecorder() as recorder, pytest.raises(CircuitOpenError) as caught:
        call()
    assert script.calls == 2
    assert caught.value.name == "payments"
    assert caught.value.retry_after == pytest.approx(17.5)
    assert [event.retry_after for event in recorder.of(CallRejected)] == [pytest.approx(17.5)]


def test_time_window_forgets_old_outcomes(clock: FakeClock) -> None:
    """Outcomes older than the window (plus one slice) no longer count."""
    breaker = CircuitBreaker(minimum_calls=4, window=10.0, clock=clock)
    fail(breaker, 3)
    clock.advance(11.0)  # one slice (1 s) past the window
    succeed(breaker, 3)
    fail(breaker)
    assert breaker.metrics.calls == 4
    assert breaker.state is CircuitState.CLOSED  # 1 failure in 4, not 4 in 7


def test_time_window_keeps_outcomes_for_at_least_the_window(clock: FakeClock) -> None:
    """Outcomes younger than the window still count."""
    breaker = CircuitBreaker(minimum_calls=4, window=10.0, clock=clock)
    fail(breaker, 3)
    clock.advance(9.0)
    fail(breaker)
    assert breaker.state is CircuitState.OPEN


def test_count_window_keeps_exactly_the_last_n(clock: FakeClock) -> None:
    """A count window judges the last ``window_calls`` outcomes only."""
    breaker = CircuitBreaker(failure_rate=0.5, minimum_calls=4, window_calls=4, clock=clock)
    fail(breaker)
    succeed(breaker, 3)  # window: F S S S
    succeed(breaker)  # F drops out: S S S S
    fail(breaker)  # S S S F
    assert breaker.metrics.calls == 4
    assert breaker.metrics.failures == 1
    fail(breaker)  # S S F F: 50 %
    assert breaker.state is CircuitState.OPEN


def test_slow_calls_open_the_breaker(clock: FakeClock) -> None:
    """Calls taking at least slow_call_duration count as slow and open it at slow_call_rate."""
    breaker = CircuitBreaker(
        minimum_calls=4, slow_call_duration=1.0, slow_call_rate=0.5, clock=clock
    )

    def slow() -> str:
        clock.advance(1.0)
        return "late"

    succeed(breaker, 2)
    assert breaker.call(slow) == "late"
    assert breaker.state is CircuitState.CLOSED
    assert breaker.call(slow) == "late"
    assert breaker.metrics.state is CircuitState.OPEN


def test_slow_calls_do_not_count_unless_configured(clock: FakeClock) -> None:
    """Without slow_call_duration, duration never matters."""
    breaker = CircuitBreaker(minimum_calls=2, clock=clock)

    def slow() -> str:
        clock.advance(100.0)
        return "late"

    for _ in range(5):
        breaker.call(slow)
    assert breaker.state is CircuitState.CLOSED


def test_half_open_after_open_for_then_closes_on_passing_trials(clock: FakeClock) -> None:
    """After open_for the breaker is half-open; half_open_calls passing trials close it."""
    breaker = CircuitBreaker(minimum_calls=2, open_for=5.0, half_open_calls=2, clock=clock)
    fail(breaker, 2)
    clock.advance(4.999)
    assert breaker.state is CircuitState.OPEN
    clock.advance(0.001)
    assert breaker.state is CircuitState.HALF_OPEN
    succeed(breaker)
    assert breaker.state is CircuitState.HALF_OPEN
    succeed(breaker)
    assert breaker.state is CircuitState.CLOSED


def test_a_failing_trial_reopens(clock: FakeClock) -> None:
    """One failing trial reopens the breaker for another open_for."""
    breaker = CircuitBreaker(minimum_calls=2, open_for=5.0, half_open_calls=3, clock=clock)
    fail(breaker, 2)
    clock.advance(5.0)
    succeed(breaker)
    fail(breaker)
    assert breaker.state is CircuitState.OPEN
    with pytest.raises(CircuitOpenError) as caught:
        succeed(breaker)
    assert caught.value.retry_after == 5.0


def test_half_open_admits_exactly_n_concurrent_trials(clock: FakeClock) -> None:
    """While N trials are in flight, every other call is rejected."""
    breaker = CircuitBreaker(minimum_calls=2, open_for=1.0, half_open_calls=2, clock=clock)
    fail(breaker, 2)
    clock.advance(1.0)
    release = threading.Event()
    entered = threading.Semaphore(0)

    @breaker
    def trial() -> str:
        entered.release()
        assert release.wait(10)
        return "ok"

    threads = [threading.Thread(target=trial) for _ in range(2)]
    for thread in threads:
        thread.start()
    for _ in range(2):
        assert entered.acquire(timeout=10)
    for _ in range(3):
        with pytest.raises(CircuitOpenError) as caught:
            succeed(breaker)
        assert caught.value.retry_after == 0.0
    release.set()
    for thread in threads:
        thread.join(10)
    assert breaker.state is CircuitState.CLOSED
    assert breaker.metrics.total_rejections == 3


@pytest.mark.parametrize("ending", ["success", "exception", "keyboard_interrupt", "cancel"])
def test_half_open_slot_is_released_on_every_path(clock: FakeClock, ending: str) -> None:
    """A trial's slot is freed after success, exception, BaseException and cancellation."""
    breaker = CircuitBreaker(minimum_calls=1, open_for=1.0, failure_on=ConnectionError, clock=clock)
    fail(breaker)
    clock.advance(1.0)

    def trial() -> str:
        if ending == "exception":
            raise ValueError("not a failure")  # failure_on=ConnectionError: a success
        if ending == "keyboard_interrupt":
            raise KeyboardInterrupt
        return "ok"

    async def cancelled_trial() -> None:
        await asyncio.get_running_loop().create_future()  # until cancelled

    async def run_and_cancel() -> None:
        task = asyncio.create_task(breaker(cancelled_trial)())
        for _ in range(3):
            await asyncio.sleep(0)
        assert breaker._machine.trials_in_flight == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    if ending == "cancel":
        asyncio.run(run_and_cancel())
    else:
        try:
            breaker.call(trial)
        except (ValueError, KeyboardInterrupt):
            pass
    machine = breaker._machine
    assert machine.trials_in_flight == 0
    if ending in ("keyboard_interrupt", "cancel"):
        assert breaker.state is CircuitState.HALF_OPEN  # neither success nor failure
        assert breaker.metrics.total_interrupted == 1
        succeed(breaker)  # the freed slot admits the next trial
    assert breaker.state is CircuitState.CLOSED


def test_late_results_from_an_older_state_are_ignored(clock: FakeClock) -> None:
    """A result admitted before the breaker opened does not count against the new state."""
    breaker = CircuitBreaker(minimum_calls=2, open_for=1.0, clock=clock)
    early = breaker._admit()
    started = clock.now()
    fail(breaker, 2)
    clock.advance(1.0)
    assert breaker.state is CircuitState.HALF_OPEN
    breaker._record(early, True, started)  # the late failure of a call from the closed state
    assert breaker.state is CircuitState.HALF_OPEN
    succeed(breaker)
    assert breaker.state is CircuitState.CLOSED


def test_listeners_and_events_see_each_transition_once(clock: FakeClock) -> None:
    """State listeners and CircuitStateChanged events report every transition, in order."""
    breaker = CircuitBreaker("bank", minimum_calls=1, open_for=1.0, clock=clock)
    seen: list[tuple[str, str]] = []
    remove = breaker.add_listener(lambda event: seen.append((event.old, event.new)))
    with EventRecorder() as recorder:
        fail(breaker)
        clock.advance(1.0)
        succeed(breaker)
    remove()
    breaker.open()
    assert seen == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    assert [(e.policy, e.old, e.new) for e in recorder.of(CircuitStateChanged)] == [
        ("bank", "closed", "open"),
        ("bank", "open", "half_open"),
        ("bank", "half_open", "closed"),
    ]


def test_a_failing_listener_does_not_break_the_call(clock: FakeClock) -> None:
    """A listener that raises is logged and skipped."""
    breaker = CircuitBreaker(minimum_calls=1, clock=clock)
    breaker.add_listener(lambda event: 1 / 0)
    fail(breaker)
    assert breaker.state is CircuitState.OPEN


def test_manual_open_and_close(clock: FakeClock) -> None:
    """open() rejects for open_for; close() admits again and clears the window."""
    breaker = CircuitBreaker(minimum_calls=3, open_for=10.0, clock=clock)
    fail(breaker, 2)
    breaker.open()
    with pytest.raises(CircuitOpenError):
        succeed(breaker)
    breaker.close()
    succeed(breaker)
    fail(breaker)
    assert breaker.state is CircuitState.CLOSED  # the two old failures were cleared
    assert breaker.metrics.calls == 2


def test_failure_on_and_failure_on_result_classify_outcomes(clock: FakeClock) -> None:
    """Only matching exceptions are failures; results can be failures too."""
    breaker = CircuitBreaker(
        minimum_calls=2,
        failure_on=ConnectionError,
        failure_on_result=lambda value: value == "error page",
        clock=clock,
    )
    for _ in range(3):
        with pytest.raises(ValueError):
            breaker.call(Script([ValueError("bad request")]))
    assert breaker.state is CircuitState.CLOSED
    assert breaker.call(Script(["error page"])) == "error page"
    assert breaker.call(Script(["error page"])) == "error page"
    assert breaker.metrics.total_failures == 2


def test_metrics_report_the_window(clock: FakeClock) -> None:
    """Metrics give the window's counts and rates and the lifetime totals."""
    breaker = CircuitBreaker(minimum_calls=10, clock=clock)
    succeed(breaker, 3)
    fail(breaker)
    metrics = breaker.metrics
    assert (metrics.calls, metrics.failures, metrics.failure_rate) == (4, 1, 0.25)
    assert (metrics.total_successes, metrics.total_failures) == (3, 1)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"failure_rate": 1.5}, "failure_rate"),
        ({"failure_rate": 0.0}, "failure_rate"),
        ({"minimum_calls": 0}, "minimum_calls"),
        ({"window": -1.0}, "window"),
        ({"window": 0.0}, "window"),
        ({"window_calls": 0}, "window_calls"),
        ({"window_calls": 5, "minimum_calls": 6}, "minimum_calls"),
        ({"open_for": -1.0}, "open_for"),
        ({"half_open_calls": 0}, "half_open_calls"),
        ({"slow_call_rate": 2.0}, "slow_call_rate"),
        ({"slow_call_duration": 0.0}, "slow_call_duration"),
        ({"name": ""}, "name"),
    ],
)
def test_bad_configuration_names_the_parameter(kwargs: dict[str, object], name: str) -> None:
    """Invalid settings fail at construction with a ValueError naming the parameter."""
    with pytest.raises(ValueError, match=name):
        CircuitBreaker(**kwargs)  # type: ignore[arg-type]


def test_failure_on_must_be_exceptions_or_a_predicate() -> None:
    """A failure_on that is neither exception classes nor a predicate is a TypeError."""
    with pytest.raises(TypeError, match="failure_on"):
        CircuitBreaker(failure_on="x")  # type: ignore[arg-type]
