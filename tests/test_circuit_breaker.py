"""CircuitBreaker: thresholds, windows, slow calls, half-open trials, listeners, validation."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from resilience import (
    Bulkhead,
    BulkheadFullError,
    CallRejected,
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    CircuitStateChanged,
    Pipeline,
    RejectedError,
)
from resilience.testing import EventRecorder, FakeClock
from tests.conftest import REJECTIONS, Colour, Script

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN


def fail(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        with pytest.raises(ConnectionError):
            breaker.call(Script([ConnectionError("down")]))


def succeed(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        assert breaker.call(Script(["ok"])) == "ok"


class Calls:
    """A failing and a succeeding call through ``breaker`` in one colour, counting real calls."""

    def __init__(self, colour: Colour, breaker: CircuitBreaker) -> None:
        self.failing = Script([ConnectionError("down")])
        self.passing = Script(["ok"])
        self._fail = colour.wrap(breaker, self.failing)
        self._succeed = colour.wrap(breaker, self.passing)

    def fail(self, times: int = 1) -> None:
        for _ in range(times):
            with pytest.raises(ConnectionError):
                self._fail()

    def succeed(self, times: int = 1) -> None:
        for _ in range(times):
            assert self._succeed() == "ok"

    @property
    def calls(self) -> int:
        return self.failing.calls + self.passing.calls


def test_stays_closed_before_minimum_calls(colour: Colour, clock: FakeClock) -> None:
    """Nine failures out of nine do not open a breaker that needs ten calls; the tenth does."""
    breaker = CircuitBreaker(failure_rate=0.5, minimum_calls=10, clock=clock)
    calls = Calls(colour, breaker)
    calls.fail(9)
    assert breaker.state is CLOSED
    calls.fail()
    assert breaker.state is OPEN
    assert calls.calls == 10


@pytest.mark.parametrize("order", ["successes first", "failures first", "interleaved"])
@pytest.mark.parametrize(("failures", "opens"), [(5, True), (4, False)])
def test_opens_exactly_at_the_failure_rate(
    clock: FakeClock, failures: int, opens: bool, order: str
) -> None:
    """With failure_rate 0.5 and ten calls, 5 failures open it and 4 do not, in any order."""
    breaker = CircuitBreaker(failure_rate=0.5, minimum_calls=10, clock=clock)
    outcomes = [True] * failures + [False] * (10 - failures)
    if order == "successes first":
        outcomes.reverse()
    elif order == "interleaved":  # F S F S ... then the remaining successes
        outcomes = [i % 2 == 0 and i < 2 * failures for i in range(10)]
    for position, failed in enumerate(outcomes):
        assert breaker.state is CLOSED, position
        if failed:
            fail(breaker)
        else:
            succeed(breaker)
    assert breaker.state is (OPEN if opens else CLOSED)
    assert breaker.metrics.total_failures == failures


def test_success_reaching_minimum_calls_can_open(clock: FakeClock) -> None:
    """The rate is checked on every outcome: a success that completes the window can open it."""
    breaker = CircuitBreaker(failure_rate=0.5, minimum_calls=4, clock=clock)
    fail(breaker, 3)
    assert breaker.state is CLOSED
    succeed(breaker)
    assert breaker.state is OPEN


def test_open_breaker_rejects_without_calling(colour: Colour, clock: FakeClock) -> None:
    """An open breaker raises CircuitOpenError with its name and retry_after, not calling."""
    breaker = CircuitBreaker("payments", minimum_calls=2, open_for=30.0, clock=clock)
    calls = Calls(colour, breaker)
    calls.fail(2)
    clock.advance(12.5)
    with EventRecorder() as recorder, pytest.raises(CircuitOpenError) as caught:
        calls.succeed()
    assert calls.calls == 2
    assert caught.value.name == "payments"
    assert caught.value.retry_after == pytest.approx(17.5)
    assert [(e.policy, e.retry_after) for e in recorder.of(CallRejected)] == [
        ("payments", pytest.approx(17.5))
    ]
    assert breaker.metrics.total_rejections == 1


def test_retry_after_counts_down_to_the_half_open_moment(clock: FakeClock) -> None:
    """retry_after is open_for minus the time since opening, on the breaker's clock."""
    breaker = CircuitBreaker(minimum_calls=1, open_for=30.0, clock=clock)
    fail(breaker)
    seen = []
    for step in (0.0, 10.0, 19.75):
        clock.advance(step)
        with pytest.raises(CircuitOpenError) as caught:
            succeed(breaker)
        seen.append(caught.value.retry_after)
    assert seen == [30.0, 20.0, pytest.approx(0.25)]
    clock.advance(0.25)
    succeed(breaker)  # the trial runs
    assert breaker.state is CLOSED


def test_time_window_keeps_outcomes_for_at_least_the_window(clock: FakeClock) -> None:
    """Outcomes a full window old (recorded mid-slice) still count towards opening."""
    breaker = CircuitBreaker(minimum_calls=4, window=10.0, clock=clock)
    clock.advance(0.5)
    fail(breaker, 3)
    clock.advance(10.0)  # the three failures are exactly one window old
    assert breaker.metrics.calls == 3
    fail(breaker)
    assert breaker.state is OPEN


def test_time_window_forgets_outcomes_older_than_a_tenth_past_the_window(
    clock: FakeClock,
) -> None:
    """Outcomes older than window * 1.1 no longer count."""
    breaker = CircuitBreaker(minimum_calls=4, window=10.0, clock=clock)
    clock.advance(0.5)
    fail(breaker, 3)
    clock.advance(11.0)
    assert breaker.metrics.calls == 0
    succeed(breaker, 3)
    fail(breaker)
    assert (breaker.metrics.calls, breaker.metrics.failures) == (4, 1)
    assert breaker.state is CLOSED  # 1 failure in 4, not 4 in 7


def test_count_window_keeps_exactly_the_last_n(clock: FakeClock) -> None:
    """A count window judges the last ``window_calls`` outcomes only, however old."""
    breaker = CircuitBreaker(failure_rate=0.5, minimum_calls=4, window_calls=4, clock=clock)
    fail(breaker)
    succeed(breaker, 3)  # window: F S S S
    clock.advance(3600.0)  # time does not age a count window
    assert (breaker.metrics.calls, breaker.metrics.failures) == (4, 1)
    succeed(breaker)  # F drops out: S S S S
    fail(breaker)  # S S S F
    assert (breaker.metrics.calls, breaker.metrics.failures) == (4, 1)
    assert breaker.state is CLOSED
    fail(breaker)  # S S F F: 50 %
    assert breaker.state is OPEN


def test_slow_calls_open_the_breaker(colour: Colour, clock: FakeClock) -> None:
    """Calls taking at least slow_call_duration count as slow and open it at slow_call_rate."""
    breaker = CircuitBreaker(
        minimum_calls=4, slow_call_duration=1.0, slow_call_rate=0.5, clock=clock
    )

    def taking(seconds: float) -> Callable[[], Any]:
        def call() -> str:
            clock.advance(seconds)
            return "late"

        return colour.wrap(breaker, call)

    almost, slow = taking(0.875), taking(1.0)
    assert almost() == "late"
    assert almost() == "late"  # just under the limit: not slow
    assert slow() == "late"
    assert breaker.metrics.slow_calls == 1
    assert breaker.state is CLOSED  # 1 slow in 3 calls, and below minimum_calls anyway
    assert slow() == "late"
    assert breaker.state is OPEN  # 2 slow in 4: 50 %
    assert breaker.metrics.total_successes == 4  # slow, but not failures


def test_slow_calls_do_not_count_unless_configured(clock: FakeClock) -> None:
    """Without slow_call_duration, duration never matters."""
    breaker = CircuitBreaker(minimum_calls=2, slow_call_rate=0.1, clock=clock)

    def slow() -> str:
        clock.advance(100.0)
        return "late"

    for _ in range(5):
        breaker.call(slow)
    assert breaker.state is CLOSED
    assert breaker.metrics.slow_calls == 0


def test_a_slow_trial_reopens_the_breaker(clock: FakeClock) -> None:
    """In half-open, a trial that succeeds but slowly reopens the breaker."""
    breaker = CircuitBreaker(minimum_calls=1, open_for=5.0, slow_call_duration=2.0, clock=clock)
    fail(breaker)
    clock.advance(5.0)

    def slow() -> str:
        clock.advance(2.0)
        return "late"

    assert breaker.call(slow) == "late"
    assert breaker.state is OPEN


def test_half_open_after_open_for_then_closes_on_passing_trials(
    colour: Colour, clock: FakeClock
) -> None:
    """After open_for the breaker is half-open; half_open_calls passing trials close it."""
    breaker = CircuitBreaker(minimum_calls=2, open_for=5.0, half_open_calls=2, clock=clock)
    calls = Calls(colour, breaker)
    calls.fail(2)
    clock.advance(4.875)
    assert breaker.state is OPEN
    clock.advance(0.125)
    assert breaker.state is HALF_OPEN
    calls.succeed()
    assert breaker.state is HALF_OPEN
    calls.succeed()
    assert breaker.state is CLOSED
    assert breaker.metrics.calls == 0  # trials are not window outcomes; the window starts empty


def test_a_failing_trial_reopens(colour: Colour, clock: FakeClock) -> None:
    """One failing trial reopens the breaker for another full open_for."""
    breaker = CircuitBreaker(minimum_calls=2, open_for=5.0, half_open_calls=3, clock=clock)
    calls = Calls(colour, breaker)
    calls.fail(2)
    clock.advance(5.0)
    calls.succeed()
    clock.advance(1.0)
    calls.fail()
    assert breaker.state is OPEN
    with pytest.raises(CircuitOpenError) as caught:
        calls.succeed()
    assert caught.value.retry_after == 5.0
    assert calls.calls == 4


def test_half_open_admits_exactly_n_concurrent_trial_threads(clock: FakeClock) -> None:
    """While N trials are in flight in threads, every other call is rejected."""
    breaker = CircuitBreaker(minimum_calls=2, open_for=1.0, half_open_calls=2, clock=clock)
    fail(breaker, 2)
    clock.advance(1.0)
    release = threading.Event()
    entered = threading.Semaphore(0)
    results: list[str] = []

    @breaker
    def trial() -> str:
        entered.release()
        assert release.wait(10)
        return "ok"

    threads = [threading.Thread(target=lambda: results.append(trial())) for _ in range(2)]
    for thread in threads:
        thread.start()
    for _ in range(2):
        assert entered.acquire(timeout=10)
    with EventRecorder() as recorder:
        for _ in range(3):
            with pytest.raises(CircuitOpenError) as caught:
                succeed(breaker)
            assert caught.value.retry_after == 0.0
    assert breaker.state is HALF_OPEN
    release.set()
    for thread in threads:
        thread.join(10)
    assert results == ["ok", "ok"]
    assert breaker.state is CLOSED
    assert breaker.metrics.total_rejections == 3
    assert len(recorder.of(CallRejected)) == 3


def test_half_open_admits_exactly_n_concurrent_trial_tasks(clock: FakeClock) -> None:
    """While N trial coroutines wait on an event, further calls are rejected; then it closes."""
    breaker = CircuitBreaker(minimum_calls=1, open_for=1.0, half_open_calls=3, clock=clock)
    fail(breaker)
    clock.advance(1.0)

    async def scenario() -> list[object]:
        release = asyncio.Event()
        inside = 0

        @breaker
        async def trial() -> str:
            nonlocal inside
            inside += 1
            await asyncio.wait_for(release.wait(), 10)
            return "ok"

        tasks = [asyncio.create_task(trial()) for _ in range(5)]
        for _ in range(5):
            await asyncio.sleep(0)
        assert inside == 3
        assert breaker.state is HALF_OPEN
        release.set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(scenario())
    assert results[:3] == ["ok", "ok", "ok"]
    assert [type(result) for result in results[3:]] == [CircuitOpenError, CircuitOpenError]
    assert breaker.state is CLOSED
    assert breaker.metrics.total_rejections == 2


class Stop(BaseException):
    """A BaseException that is not KeyboardInterrupt (asyncio.run passes it through)."""


@pytest.mark.parametrize("ending", ["success", "exception", "keyboard_interrupt", "cancel"])
def test_half_open_slot_is_released_on_every_path(clock: FakeClock, ending: str) -> None:
    """A trial's slot is freed after success, exception, BaseException and cancellation."""
    breaker = CircuitBreaker(minimum_calls=1, open_for=1.0, on=ConnectionError, clock=clock)
    fail(breaker)
    clock.advance(1.0)

    def trial() -> str:
        if ending == "exception":
            raise ValueError("not a failure")  # on=ConnectionError: a success
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
        with pytest.raises(CircuitOpenError):
            await breaker(cancelled_trial)()  # the one slot is taken
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
    assert breaker._machine.trials_in_flight == 0
    metrics = breaker.metrics
    if ending in ("keyboard_interrupt", "cancel"):
        assert breaker.state is HALF_OPEN  # neither success nor failure
        assert (metrics.total_interrupted, metrics.total_successes, metrics.total_failures) == (
            1,
            0,
            1,
        )
        succeed(breaker)  # the freed slot admits the next trial
    else:
        assert (metrics.total_interrupted, metrics.total_successes) == (0, 1)
    assert breaker.state is CLOSED


@pytest.mark.parametrize("ending", ["exception", "base_exception"])
def test_async_trial_slot_is_released_on_exceptions(clock: FakeClock, ending: str) -> None:
    """The async shell frees a trial's slot after a failure and after a BaseException."""
    breaker = CircuitBreaker(minimum_calls=1, open_for=1.0, clock=clock)
    fail(breaker)
    clock.advance(1.0)

    @breaker
    async def trial() -> None:
        await asyncio.sleep(0)
        raise ConnectionError("down") if ending == "exception" else Stop()

    with pytest.raises(ConnectionError if ending == "exception" else Stop):
        asyncio.run(trial())
    assert breaker._machine.trials_in_flight == 0
    if ending == "exception":
        assert breaker.state is OPEN
    else:
        assert breaker.state is HALF_OPEN
        assert breaker.metrics.total_interrupted == 1
        succeed(breaker)
        assert breaker.state is CLOSED


def test_late_results_from_an_older_state_are_ignored(clock: FakeClock) -> None:
    """A result admitted before the breaker opened does not count against the new state."""
    breaker = CircuitBreaker(minimum_calls=2, open_for=1.0, clock=clock)
    early = breaker._admit()
    started = clock.now()
    fail(breaker, 2)
    clock.advance(1.0)
    assert breaker.state is HALF_OPEN
    breaker._record(early, True, started)  # the late failure of a call from the closed state
    assert breaker.state is HALF_OPEN
    succeed(breaker)
    assert breaker.state is CLOSED


def test_a_late_failure_from_before_closing_does_not_reopen(clock: FakeClock) -> None:
    """Calls in flight when the breaker opened fail late into the new closed state: ignored."""
    breaker = CircuitBreaker(minimum_calls=1, open_for=1.0, clock=clock)
    stragglers = [breaker._admit() for _ in range(3)]
    fail(breaker)
    clock.advance(1.0)
    succeed(breaker)
    assert breaker.state is CLOSED
    for permit in stragglers:
        breaker._record(permit, True, clock.now())
    assert breaker.state is CLOSED
    assert breaker.metrics.calls == 0
    assert breaker.metrics.total_failures == 4  # lifetime totals still count them


def test_listeners_and_events_see_each_transition_once(clock: FakeClock) -> None:
    """State listeners and CircuitStateChanged events report every transition once, in order."""
    breaker = CircuitBreaker("bank", minimum_calls=1, open_for=1.0, clock=clock)
    seen: list[tuple[str, str, str]] = []
    remove = breaker.add_listener(lambda event: seen.append((event.policy, event.old, event.new)))
    with EventRecorder() as recorder:
        fail(breaker)
        for _ in range(3):
            with pytest.raises(CircuitOpenError):
                succeed(breaker)
        clock.advance(1.0)
        for _ in range(3):
            assert breaker.state is HALF_OPEN  # read three times, moved once
        fail(breaker)
        clock.advance(1.0)
        succeed(breaker)
        breaker.open()
        breaker.open()  # already open: no transition
        breaker.close()
        breaker.close()  # already closed: no transition
    remove()
    breaker.open()
    expected = [
        ("bank", "closed", "open"),
        ("bank", "open", "half_open"),
        ("bank", "half_open", "open"),
        ("bank", "open", "half_open"),
        ("bank", "half_open", "closed"),
        ("bank", "closed", "open"),
        ("bank", "open", "closed"),
    ]
    assert seen == expected  # the removed listener missed the last open()
    assert [(e.policy, e.old, e.new) for e in recorder.of(CircuitStateChanged)] == expected
    assert [e.retry_after for e in recorder.of(CallRejected)] == [1.0, 1.0, 1.0]


def test_a_failing_listener_does_not_break_the_call(clock: FakeClock) -> None:
    """A listener that raises is logged and skipped; the next listener still runs."""
    breaker = CircuitBreaker(minimum_calls=1, clock=clock)
    seen: list[str] = []
    breaker.add_listener(lambda event: 1 / 0)
    breaker.add_listener(lambda event: seen.append(event.new))
    fail(breaker)
    assert breaker.state is OPEN
    assert seen == ["open"]


def test_manual_open_and_close(colour: Colour, clock: FakeClock) -> None:
    """open() rejects for open_for; close() admits again and clears the window."""
    breaker = CircuitBreaker(minimum_calls=3, open_for=10.0, clock=clock)
    calls = Calls(colour, breaker)
    calls.fail(2)
    breaker.open()
    assert breaker.state is OPEN
    with pytest.raises(CircuitOpenError) as caught:
        calls.succeed()
    assert caught.value.retry_after == 10.0
    breaker.close()
    calls.succeed()
    calls.fail()
    assert breaker.state is CLOSED  # the two old failures were cleared
    assert breaker.metrics.calls == 2


def test_close_clears_the_window_of_a_closed_breaker(clock: FakeClock) -> None:
    """close() on a closed breaker starts its window afresh, as its docstring promises."""
    breaker = CircuitBreaker(minimum_calls=3, clock=clock)
    fail(breaker, 2)
    breaker.close()
    assert breaker.metrics.calls == 0
    fail(breaker, 2)
    assert breaker.state is CLOSED


def test_open_on_an_open_breaker_restarts_its_open_period(clock: FakeClock) -> None:
    """open() while open makes the breaker wait a full open_for again."""
    breaker = CircuitBreaker(minimum_calls=1, open_for=10.0, clock=clock)
    fail(breaker)
    clock.advance(8.0)
    breaker.open()
    clock.advance(8.0)
    with pytest.raises(CircuitOpenError) as caught:
        succeed(breaker)
    assert caught.value.retry_after == 2.0


def test_on_and_on_result_classify_outcomes(clock: FakeClock) -> None:
    """Only matching exceptions are failures; results can be failures too."""
    breaker = CircuitBreaker(
        minimum_calls=2,
        on=ConnectionError,
        on_result=lambda value: value == "error page",
        clock=clock,
    )
    for _ in range(3):
        with pytest.raises(ValueError):
            breaker.call(Script([ValueError("bad request")]))
    assert breaker.state is CLOSED
    assert breaker.call(Script(["error page"])) == "error page"
    assert breaker.call(Script(["error page"])) == "error page"
    assert breaker.metrics.total_failures == 2
    assert breaker.metrics.total_successes == 3


def test_a_broken_predicate_counts_a_failure_and_frees_the_slot(clock: FakeClock) -> None:
    """An ``on`` predicate that raises counts a failure instead of leaking the trial slot."""

    def broken(exc: BaseException) -> bool:
        raise RuntimeError("bug in predicate")

    breaker = CircuitBreaker(minimum_calls=1, open_for=1.0, on=broken, clock=clock)
    fail(breaker)
    assert breaker.state is OPEN
    clock.advance(1.0)
    fail(breaker)  # the trial fails: reopened, not stuck half-open with a leaked slot
    assert breaker.state is OPEN
    assert breaker._machine.trials_in_flight == 0


def test_metrics_report_the_window_and_the_totals(clock: FakeClock) -> None:
    """Metrics give the window's counts and rates and the lifetime totals."""
    breaker = CircuitBreaker(minimum_calls=10, slow_call_duration=1.0, clock=clock)

    def slow() -> str:
        clock.advance(1.0)
        return "late"

    succeed(breaker, 2)
    breaker.call(slow)
    fail(breaker)
    metrics = breaker.metrics
    assert metrics.state is CLOSED
    assert (metrics.calls, metrics.failures, metrics.failure_rate) == (4, 1, 0.25)
    assert (metrics.slow_calls, metrics.slow_call_rate) == (1, 0.25)
    assert (metrics.total_successes, metrics.total_failures) == (3, 1)
    assert (metrics.total_rejections, metrics.total_interrupted) == (0, 0)
    breaker.open()
    for _ in range(2):
        with pytest.raises(CircuitOpenError):
            succeed(breaker)
    metrics = breaker.metrics
    assert (metrics.state, metrics.calls, metrics.failure_rate) == (OPEN, 0, 0.0)
    assert metrics.total_rejections == 2


def test_metrics_state_agrees_with_state_after_open_for(clock: FakeClock) -> None:
    """Once open_for has passed, metrics.state reads HALF_OPEN, like state does."""
    breaker = CircuitBreaker(minimum_calls=1, open_for=5.0, clock=clock)
    fail(breaker)
    clock.advance(5.0)
    assert breaker.metrics.state is HALF_OPEN
    assert breaker.state is HALF_OPEN


def test_replace_keeps_the_settings_but_not_the_state(clock: FakeClock) -> None:
    """replace (used per origin by the transports) gives a fresh breaker with the same settings."""
    breaker = CircuitBreaker("api", minimum_calls=1, open_for=7.0, clock=clock)
    fail(breaker)
    copy = breaker.replace(name="api[x]")
    assert (copy.name, copy.state, repr(copy)) == (
        "api[x]",
        CLOSED,
        "CircuitBreaker('api[x]', state='closed')",
    )
    fail(copy)
    with pytest.raises(CircuitOpenError) as caught:
        succeed(copy)
    assert (caught.value.name, caught.value.retry_after) == ("api[x]", 7.0)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"failure_rate": 1.5}, "failure_rate"),
        ({"failure_rate": 0.0}, "failure_rate"),
        ({"failure_rate": -0.5}, "failure_rate"),
        ({"minimum_calls": 0}, "minimum_calls"),
        ({"window": -1.0}, "window"),
        ({"window": 0.0}, "window"),
        ({"window": float("inf")}, "window"),
        ({"window_calls": 0}, "window_calls"),
        ({"window_calls": 5, "minimum_calls": 6}, "minimum_calls"),
        ({"open_for": -1.0}, "open_for"),
        ({"half_open_calls": 0}, "half_open_calls"),
        ({"slow_call_rate": 2.0}, "slow_call_rate"),
        ({"slow_call_rate": 0.0}, "slow_call_rate"),
        ({"slow_call_duration": 0.0}, "slow_call_duration"),
        ({"slow_call_duration": -1.0}, "slow_call_duration"),
        ({"name": ""}, "name"),
    ],
)
def test_bad_configuration_names_the_parameter(kwargs: dict[str, object], name: str) -> None:
    """Invalid settings fail at construction with a ValueError naming the parameter."""
    with pytest.raises(ValueError, match=f"^{name} "):
        CircuitBreaker(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"on": "x"}, "on"),
        ({"on": (ConnectionError, "x")}, "on"),
        ({"on_result": "x"}, "on_result"),
        ({"minimum_calls": 2.5}, "minimum_calls"),
        ({"failure_rate": "half"}, "failure_rate"),
    ],
)
def test_wrong_types_are_type_errors_naming_the_parameter(
    kwargs: dict[str, object], name: str
) -> None:
    """An ``on`` that is neither exception classes nor a predicate (etc.) is a TypeError."""
    with pytest.raises(TypeError, match=f"^{name} "):
        CircuitBreaker(**kwargs)  # type: ignore[arg-type]


def test_bulkhead_refusals_inside_do_not_open_the_breaker(colour: Colour, clock: FakeClock) -> None:
    """The documented order, a breaker outside a bulkhead, with default settings: 5 answered
    calls then 5 BulkheadFullError (the bulkhead full) are 5 outcomes, not 10 with half
    failed; the breaker stays closed (the audit saw them open it)."""
    breaker = CircuitBreaker(clock=clock)
    bulkhead = Bulkhead(1, max_waiting=0, clock=clock)
    guarded = colour.wrap(Pipeline(breaker, bulkhead), lambda: "ok")
    assert [guarded() for _ in range(5)] == ["ok"] * 5
    assert bulkhead._try_acquire()  # another caller holds the only permit
    for _ in range(5):
        with pytest.raises(BulkheadFullError):
            guarded()
    bulkhead._release()
    metrics = breaker.metrics
    assert breaker.state is CLOSED
    assert (metrics.calls, metrics.failures, metrics.total_successes) == (5, 0, 5)
    assert (metrics.total_failures, metrics.total_interrupted) == (0, 5)


@pytest.mark.parametrize("rejection", REJECTIONS.values(), ids=list(REJECTIONS))
def test_a_rejection_inside_frees_a_trial_slot_without_an_outcome(
    colour: Colour, clock: FakeClock, rejection: Callable[[], Exception]
) -> None:
    """A half-open trial refused by a policy inside (even with ``on=Exception``) neither
    reopens nor closes the breaker, and frees its slot for the next trial."""
    breaker = CircuitBreaker(minimum_calls=1, open_for=1.0, on=Exception, clock=clock)
    fail(breaker)
    clock.advance(1.0)

    def refused() -> None:
        raise rejection()

    with pytest.raises(RejectedError):
        colour.wrap(breaker, refused)()
    assert breaker.state is HALF_OPEN and breaker._machine.trials_in_flight == 0
    assert colour.wrap(breaker, lambda: "ok")() == "ok"  # the freed slot admits a trial
    assert breaker.state is CLOSED
