"""AdaptiveConcurrency: limits that move with samples, refusals, the queue, and slots released
on every path (cancellation included)."""

from __future__ import annotations

import asyncio
import pickle
import threading
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from resilience import (
    AdaptiveConcurrency,
    AimdLimit,
    ConcurrencyLimited,
    ConcurrencyLimitedError,
    DeadlineExceededError,
    Gradient2Limit,
    RejectedError,
)
from resilience.testing import EventRecorder, FakeClock
from tests.conftest import REJECTIONS, Colour
from tests.test_bulkhead import (
    Queue,
    cancelled_waiter_cancels_the_timer,
    deadline_ends_the_wait_first,
    granted_before_max_wait_cancels_the_timer,
    refused_exactly_when_max_wait_passes,
)

WAIT = 10.0  # the bound on every synchronisation wait: a bug fails the test instead of hanging


class Recording:
    """A limit algorithm that records its samples and returns a scripted limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.samples: list[tuple[float, int, bool]] = []

    def update(self, rtt: float, in_flight: int, dropped: bool, now: float) -> int:
        self.samples.append((round(rtt, 6), in_flight, dropped))
        return self.limit

    def replace(self, **changes: Any) -> Recording:
        return Recording(self.limit)


def test_each_call_is_one_sample_timed_on_the_injected_clock(
    colour: Colour, clock: FakeClock
) -> None:
    """The shell hands the algorithm the call's duration, its in-flight count and the verdict."""
    algorithm = Recording(limit=4)
    limiter = AdaptiveConcurrency(algorithm, clock=clock)

    def call(seconds: float) -> float:
        clock.advance(seconds)
        if seconds > 1:
            raise TimeoutError("slow")
        return seconds

    guarded = colour.wrap(limiter, call)
    guarded(0.010)
    guarded(0.250)
    with pytest.raises(TimeoutError):
        guarded(2.0)
    assert algorithm.samples == [(0.01, 1, False), (0.25, 1, False), (2.0, 1, True)]
    algorithm.limit = 7
    guarded(0.001)
    assert limiter.limit == 7 and limiter.in_flight == 0


def test_gradient2_through_the_policy_shrinks_when_latency_climbs(clock: FakeClock) -> None:
    """Full rounds of calls grow a Gradient2 limit; when latency quadruples it falls at once
    (then creeps back as the long-term average learns the new latency)."""
    limiter = AdaptiveConcurrency(Gradient2Limit(initial_limit=20, warmup=5), clock=clock)
    limits = []
    for latency in [0.010] * 10 + [0.040] * 3:
        permits = [limiter._try_acquire() for _ in range(limiter.limit)]
        assert limiter._try_acquire() == 0  # full
        started = clock.now()
        clock.advance(latency)
        for permit in permits:
            limiter._sample(permit, started, False)
        limits.append(limiter.limit)
    assert limits[9] == 200 and max(limits[10:]) < 20
    assert limiter.in_flight == 0


def test_drops_shrink_an_aimd_limit_and_other_failures_do_not(
    colour: Colour, clock: FakeClock
) -> None:
    """An ``on`` failure is a drop; another exception only frees its slot."""
    limiter = AdaptiveConcurrency(AimdLimit(initial_limit=10, backoff_ratio=0.5), clock=clock)

    def fail(kind: type[Exception]) -> None:
        raise kind("x")

    guarded = colour.wrap(limiter, fail)
    with pytest.raises(TimeoutError):
        guarded(TimeoutError)
    assert limiter.limit == 5
    with pytest.raises(KeyError):
        guarded(KeyError)
    assert limiter.limit == 5 and limiter.in_flight == 0


def test_results_can_be_drops(colour: Colour, clock: FakeClock) -> None:
    """``on_result`` marks answers such as a 503 as drops."""
    limiter = AdaptiveConcurrency(
        AimdLimit(initial_limit=8, backoff_ratio=0.5),
        on_result=lambda status: status == 503,
        clock=clock,
    )
    guarded = colour.wrap(limiter, lambda status: status)
    assert guarded(503) == 503
    assert limiter.limit == 4


def test_a_raising_drop_predicate_counts_a_drop_and_frees_the_slot(clock: FakeClock) -> None:
    """A predicate that raises is logged and counted as a drop; nothing leaks."""
    limiter = AdaptiveConcurrency(
        AimdLimit(initial_limit=8, backoff_ratio=0.5), on_result=lambda _: 1 / 0, clock=clock
    )
    assert limiter(lambda: "ok")() == "ok"
    assert limiter.limit == 4 and limiter.in_flight == 0


class Gate:
    """Sync calls that stay inside the limiter until released."""

    def __init__(self, limiter: AdaptiveConcurrency) -> None:
        self.inside = threading.Semaphore(0)
        self.release = threading.Event()
        self.errors: list[BaseException] = []

        @limiter
        def hold() -> None:
            self.inside.release()
            assert self.release.wait(WAIT)

        self.hold = hold
        self.threads: list[threading.Thread] = []

    def start(self, count: int) -> None:
        for _ in range(count):
            thread = threading.Thread(target=self._run)
            thread.start()
            self.threads.append(thread)

    def _run(self) -> None:
        try:
            self.hold()
        except BaseException as error:
            self.errors.append(error)

    def finish(self) -> None:
        self.release.set()
        for thread in self.threads:
            thread.join(WAIT)


def test_over_the_limit_calls_are_refused_at_once_with_data() -> None:
    """At the limit, a call raises ConcurrencyLimitedError (name, limit, in flight) and an event."""
    limiter = AdaptiveConcurrency(AimdLimit(initial_limit=2), name="db")
    gate = Gate(limiter)
    gate.start(2)
    for _ in range(2):
        assert gate.inside.acquire(timeout=WAIT)
    recorder = EventRecorder()
    try:
        with recorder, pytest.raises(ConcurrencyLimitedError) as raised:
            gate.hold()
    finally:
        gate.finish()
    error = raised.value
    assert (error.name, error.limit, error.in_flight) == ("db", 2, 2)
    assert "adaptive concurrency limit 'db' reached" in str(error)
    assert [(e.policy, e.limit, e.in_flight) for e in recorder.of(ConcurrencyLimited)] == [
        ("db", 2, 2)
    ]
    assert limiter.rejections == 1 and limiter.in_flight == 0 and not gate.errors


def test_a_queued_call_gets_the_freed_slot() -> None:
    """With ``max_waiting``, an excess call waits and runs once a slot frees."""
    limiter = AdaptiveConcurrency(AimdLimit(initial_limit=1), max_waiting=1, max_wait=WAIT)
    gate = Gate(limiter)
    gate.start(1)
    assert gate.inside.acquire(timeout=WAIT)
    gate.start(1)  # queues behind the first
    while limiter.waiting == 0:
        threading.Event().wait(0.001)
    with pytest.raises(ConcurrencyLimitedError):  # the queue is full
        gate.hold()
    gate.finish()
    assert not gate.errors and limiter.in_flight == 0 and limiter.rejections == 1


def limiter_queue(max_wait: float | None, clock: FakeClock) -> Queue:
    """A limiter at a limit of 1 with room for one waiter, its only slot held by the test."""
    return queue_of(
        AdaptiveConcurrency(
            AimdLimit(initial_limit=1), max_waiting=1, max_wait=max_wait, clock=clock
        )
    )


def queue_of(limiter: AdaptiveConcurrency) -> Queue:
    return Queue(
        limiter,
        ConcurrencyLimitedError,
        lambda: (limiter.in_flight, limiter.waiting),
        limiter._try_acquire,
        limiter._release,
    )


def test_a_queued_call_is_refused_exactly_when_the_clock_passes_max_wait(
    colour: Colour, clock: FakeClock
) -> None:
    """Queue waits run on the limiter's clock: refused with ConcurrencyLimitedError when the
    FakeClock passes max_wait, not before, and counted as a rejection."""
    limiter = AdaptiveConcurrency(
        AimdLimit(initial_limit=1), max_waiting=1, max_wait=5.0, clock=clock
    )
    refused_exactly_when_max_wait_passes(queue_of(limiter), colour, clock)
    assert limiter.rejections == 1


def test_a_queued_call_granted_before_max_wait_calls_its_timer_off(
    colour: Colour, clock: FakeClock
) -> None:
    """A slot freed before max_wait passes goes to the waiter, whose timer is cancelled."""
    granted_before_max_wait_cancels_the_timer(limiter_queue(5.0, clock), colour, clock)


def test_a_cancelled_queued_coroutine_calls_its_timer_off(
    async_colour: Colour, clock: FakeClock
) -> None:
    """A queued coroutine cancelled before max_wait leaves the queue and cancels its timer."""
    cancelled_waiter_cancels_the_timer(limiter_queue(5.0, clock), async_colour, clock)


def test_a_queued_call_is_refused_when_the_deadline_passes_first(
    colour: Colour, clock: FakeClock
) -> None:
    """The queue wait never outlasts the enclosing deadline: the wait ends, the call is refused."""
    deadline_ends_the_wait_first(limiter_queue(5.0, clock), colour, clock)


def test_a_clock_that_is_not_a_clock_fails_at_construction() -> None:
    """``clock=`` takes a Clock or None; anything else is a TypeError naming the parameter."""
    with pytest.raises(TypeError, match="clock must be a Clock"):
        AdaptiveConcurrency(clock="monotonic")  # type: ignore[arg-type]


def test_a_queued_coroutine_gets_the_freed_slot(async_colour: Colour) -> None:
    """Under asyncio and under trio, an excess coroutine waits in the queue and runs once the
    slot frees (woken in the running library's own way)."""
    limiter = AdaptiveConcurrency(AimdLimit(initial_limit=1), max_waiting=1, max_wait=WAIT)
    order: list[str] = []

    async def until(condition: Any) -> None:
        for _ in range(10_000):
            if condition():
                return
            await anyio.lowlevel.checkpoint()
        raise AssertionError("timed out")

    async def main() -> None:
        release = anyio.Event()

        @limiter
        async def work(name: str) -> None:
            order.append(name)
            if name == "first":
                await release.wait()

        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as group:
                group.start_soon(work, "first")
                await until(lambda: limiter.in_flight == 1)
                group.start_soon(work, "second")
                await until(lambda: limiter.waiting == 1)
                release.set()

    async_colour.run(main)
    assert order == ["first", "second"]
    assert limiter.in_flight == 0 and limiter.waiting == 0


def test_async_cancellation_releases_the_slot_and_the_queue_place() -> None:
    """Cancelling a running call and a queued call frees the slot and the queue place."""
    limiter = AdaptiveConcurrency(AimdLimit(initial_limit=1), max_waiting=2, max_wait=WAIT)

    async def main() -> None:
        entered = asyncio.Event()

        @limiter
        async def hold() -> None:
            entered.set()
            await asyncio.Event().wait()

        running = asyncio.create_task(hold())
        await entered.wait()
        queued = asyncio.create_task(hold())
        await asyncio.sleep(0)  # it runs until it waits in the queue
        assert limiter.waiting == 1
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await queued
        assert limiter.waiting == 0 and limiter.in_flight == 1
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        assert limiter.in_flight == 0

    asyncio.run(main())


def test_async_waiter_handed_a_slot_while_cancelled_passes_it_on() -> None:
    """A waiter granted a slot just as it is cancelled passes it on to the next waiter."""
    limiter = AdaptiveConcurrency(AimdLimit(initial_limit=1), max_waiting=2, max_wait=WAIT)

    async def main() -> list[str]:
        order: list[str] = []
        release = asyncio.Event()

        @limiter
        async def work(name: str) -> None:
            order.append(name)
            if name == "first":
                await release.wait()

        first = asyncio.create_task(work("first"))
        await asyncio.sleep(0)
        second = asyncio.create_task(work("second"))
        third = asyncio.create_task(work("third"))
        await asyncio.sleep(0)  # both run until they wait in the queue
        assert limiter.waiting == 2
        release.set()
        await first  # the slot goes to "second" now, whose wake-up is still pending
        second.cancel()
        await asyncio.gather(second, return_exceptions=True)
        await asyncio.wait_for(third, WAIT)
        return order

    assert asyncio.run(main()) == ["first", "third"]
    assert limiter.in_flight == 0 and limiter.waiting == 0


def test_base_exceptions_release_without_a_sample(colour: Colour, clock: FakeClock) -> None:
    """KeyboardInterrupt and friends free the slot and leave the limit alone."""
    limiter = AdaptiveConcurrency(AimdLimit(initial_limit=3), clock=clock)

    def interrupt() -> None:
        raise KeyboardInterrupt

    guarded = colour.wrap(limiter, interrupt)
    with pytest.raises(KeyboardInterrupt):
        guarded()
    assert limiter.in_flight == 0 and limiter.limit == 3


def test_a_timeout_inside_counts_as_a_drop(clock: FakeClock) -> None:
    """DeadlineExceededError is a TimeoutError, so the default ``on`` counts it."""
    limiter = AdaptiveConcurrency(AimdLimit(initial_limit=6, backoff_ratio=0.5), clock=clock)

    def slow() -> None:
        raise DeadlineExceededError("timeout", 0.1)

    with pytest.raises(DeadlineExceededError):
        limiter(slow)()
    assert limiter.limit == 3


def test_copies_are_independent() -> None:
    """``replace`` (one limiter per origin) keeps the settings and starts a fresh algorithm."""
    limiter = AdaptiveConcurrency(AimdLimit(initial_limit=4), name="a")
    copy = limiter.replace(name="b")
    assert copy.name == "b" and copy.limit == 4
    assert copy._admission.algorithm is not limiter._admission.algorithm
    assert AdaptiveConcurrency().name == "adaptive_concurrency"


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"algorithm": 3}, TypeError, "algorithm must be a limit algorithm"),
        ({"max_waiting": -1}, ValueError, "max_waiting must be >= 0, got -1"),
        ({"max_waiting": 2}, ValueError, "max_wait must be > 0 (or None for no limit)"),
        ({"max_wait": 1.0}, ValueError, "max_wait has no effect without max_waiting > 0"),
        ({"on": "x"}, TypeError, "on must be an exception class"),
        ({"on_result": 1}, TypeError, "on_result must be a predicate or None"),
        ({"name": ""}, ValueError, "name must be a non-empty string"),
    ],
)
def test_bad_settings_fail_at_construction(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    """Each bad setting raises at construction, naming the parameter."""
    with pytest.raises(error) as raised:
        AdaptiveConcurrency(**kwargs)
    assert message in str(raised.value)


def test_the_error_pickles_with_its_data() -> None:
    """ConcurrencyLimitedError keeps name, limit, in-flight and retry_after through pickle."""
    copy = pickle.loads(pickle.dumps(ConcurrencyLimitedError("db", 5, 5, 0.02)))
    assert (copy.name, copy.limit, copy.in_flight, copy.retry_after) == ("db", 5, 5, 0.02)


def test_limit_in_flight_refusals_and_throttle_are_metrics(clock: FakeClock) -> None:
    """Live limiters and throttles are read when metrics are collected (no per-call cost)."""
    from resilience import AdaptiveThrottle
    from resilience.instrumentation import instrument
    from tests.test_instrumentation import Telemetry

    otel = Telemetry()
    undo = instrument(**otel.providers)
    limiter = AdaptiveConcurrency(AimdLimit(initial_limit=1), name="metrics-limit")
    throttle = AdaptiveThrottle(name="metrics-throttle", clock=clock)
    try:
        permit = limiter._try_acquire()
        with pytest.raises(ConcurrencyLimitedError):
            limiter(lambda: None)()

        def values(metric: str, name: str) -> list[Any]:
            return [
                point.value
                for point in otel.points(metric)
                if point.attributes["resilience.policy"] == name
            ]

        assert values("resilience.concurrency.limit", "metrics-limit") == [1]
        assert values("resilience.concurrency.in_flight", "metrics-limit") == [1]
        assert values("resilience.concurrency.rejections", "metrics-limit") == [1]
        assert values("resilience.throttle.probability", "metrics-throttle") == [0.0]
        assert values("resilience.throttle.refusals", "metrics-throttle") == [0]
        limiter._sample(permit, clock.now(), False)
        del throttle
    finally:
        undo()
        otel.meter_provider.shutdown()


@pytest.mark.parametrize("rejection", REJECTIONS.values(), ids=list(REJECTIONS))
def test_a_rejection_inside_is_no_sample(
    colour: Colour, clock: FakeClock, rejection: Callable[[], Exception]
) -> None:
    """A RejectedError from a policy inside is no latency sample, not even with
    ``on=Exception``: the dependency never saw the call. The slot is freed."""
    algorithm = Recording(10)
    limiter = AdaptiveConcurrency(algorithm, on=Exception, clock=clock)

    def refused() -> None:
        clock.advance(0.5)
        raise rejection()

    def down() -> None:
        raise ConnectionError("down")

    with pytest.raises(RejectedError):
        colour.wrap(limiter, refused)()
    assert algorithm.samples == [] and limiter.in_flight == 0
    with pytest.raises(ConnectionError):
        colour.wrap(limiter, down)()
    assert algorithm.samples == [(0.0, 1, True)]  # an ``on`` failure still is a drop
