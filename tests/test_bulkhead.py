"""Bulkhead: concurrency limit, bounded FIFO queue, and permits released on every path."""

from __future__ import annotations

import asyncio
import threading

import pytest

from resilience import Bulkhead, BulkheadFullError, BulkheadRejected, Deadline
from resilience.testing import EventRecorder


class Held:
    """Threads that enter a guarded function and stay inside until released."""

    def __init__(self, bulkhead: Bulkhead) -> None:
        self.inside = threading.Semaphore(0)
        self.release = threading.Event()
        self.order: list[int] = []
        self.errors: list[BaseException] = []

        @bulkhead
        def work(n: int) -> None:
            self.order.append(n)
            self.inside.release()
            assert self.release.wait(10)

        self.work = work
        self.threads: list[threading.Thread] = []

    def start(self, n: int) -> None:
        def run() -> None:
            try:
                self.work(n)
            except BaseException as exc:
                self.errors.append(exc)

        thread = threading.Thread(target=run)
        self.threads.append(thread)
        thread.start()

    def finish(self) -> None:
        self.release.set()
        for thread in self.threads:
            thread.join(10)


def wait_until(condition: object, what: str) -> None:
    """Spin (bounded) until ``condition()`` holds: waiting on state, not on time."""
    for _ in range(10_000):
        if condition():  # type: ignore[operator]
            return
        threading.Event().wait(0.001)
    raise AssertionError(f"timed out waiting for {what}")


def test_full_bulkhead_rejects_at_once_without_calling() -> None:
    """With every permit taken and no queue, a call is rejected without running."""
    bulkhead = Bulkhead(2, name="db")
    held = Held(bulkhead)
    for n in range(2):
        held.start(n)
    for _ in range(2):
        assert held.inside.acquire(timeout=10)
    with EventRecorder() as recorder, pytest.raises(BulkheadFullError) as caught:
        held.work(99)
    held.finish()
    assert 99 not in held.order
    assert (caught.value.name, caught.value.max_concurrent) == ("db", 2)
    assert [event.policy for event in recorder.of(BulkheadRejected)] == ["db"]
    assert bulkhead.active == 0


def test_queue_is_bounded_and_served_first_in_first_out() -> None:
    """Up to max_waiting calls queue and run in arrival order; one more is rejected."""
    bulkhead = Bulkhead(1, max_waiting=2, max_wait=10.0)
    held = Held(bulkhead)
    held.start(0)
    assert held.inside.acquire(timeout=10)
    held.start(1)
    wait_until(lambda: bulkhead.waiting == 1, "first waiter")
    held.start(2)
    wait_until(lambda: bulkhead.waiting == 2, "second waiter")
    with pytest.raises(BulkheadFullError):
        held.work(3)
    held.finish()
    assert held.order == [0, 1, 2]
    assert (bulkhead.active, bulkhead.waiting) == (0, 0)


def test_a_waiter_whose_wait_runs_out_is_rejected() -> None:
    """A queued call that gets no permit within max_wait raises BulkheadFullError."""
    bulkhead = Bulkhead(1, max_waiting=1, max_wait=0.05)
    held = Held(bulkhead)
    held.start(0)
    assert held.inside.acquire(timeout=10)
    with pytest.raises(BulkheadFullError):
        held.work(1)
    assert bulkhead.waiting == 0
    held.finish()
    assert bulkhead.active == 0


def test_a_waiter_never_waits_past_the_deadline() -> None:
    """The queue wait is cut short by the current deadline, even with no max_wait of its own."""
    bulkhead = Bulkhead(1, max_waiting=1, max_wait=None)
    held = Held(bulkhead)
    held.start(0)
    assert held.inside.acquire(timeout=10)
    with pytest.raises(BulkheadFullError):
        Deadline(0.05)(held.work)(1)
    held.finish()
    assert (bulkhead.active, bulkhead.waiting) == (0, 0)


@pytest.mark.parametrize("ending", [None, ValueError, KeyboardInterrupt])
def test_permit_released_after_return_exception_and_base_exception(ending: type | None) -> None:
    """The permit comes back whether the call returns, raises, or is interrupted."""
    bulkhead = Bulkhead(1)

    @bulkhead
    def call() -> str:
        if ending is not None:
            raise ending()
        return "ok"

    for _ in range(3):
        if ending is None:
            assert call() == "ok"
        else:
            with pytest.raises(ending):
                call()
        assert bulkhead.active == 0


def test_async_calls_are_limited_and_permits_survive_cancellation() -> None:
    """Coroutines share the limit; cancelling a running call or a queued one leaks nothing."""
    bulkhead = Bulkhead(2, max_waiting=2, max_wait=10.0)

    async def scenario() -> None:
        gate = asyncio.Event()
        running = 0
        peak = 0

        @bulkhead
        async def work() -> None:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            try:
                await gate.wait()
            finally:
                running -= 1

        tasks = [asyncio.create_task(work()) for _ in range(4)]
        for _ in range(5):
            await asyncio.sleep(0)
        assert (bulkhead.active, bulkhead.waiting) == (2, 2)
        with pytest.raises(BulkheadFullError):
            await work()
        tasks[0].cancel()  # a running call
        tasks[3].cancel()  # a queued call
        for _ in range(5):
            await asyncio.sleep(0)
        assert (bulkhead.active, bulkhead.waiting) == (2, 0)  # task 2 got task 0's permit
        gate.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert [type(r).__name__ for r in results] == [
            "CancelledError",
            "NoneType",
            "NoneType",
            "CancelledError",
        ]
        assert peak == 2

    asyncio.run(scenario())
    assert (bulkhead.active, bulkhead.waiting) == (0, 0)


def test_a_waiter_cancelled_just_after_being_granted_passes_the_permit_on() -> None:
    """If a permit is handed to a waiter that is being cancelled, the next waiter gets it."""
    bulkhead = Bulkhead(1, max_waiting=2, max_wait=10.0)

    async def scenario() -> None:
        @bulkhead
        async def work() -> str:
            return "done"

        assert bulkhead._try_acquire()  # the test holds the only permit
        second = asyncio.create_task(work())
        third = asyncio.create_task(work())
        for _ in range(3):
            await asyncio.sleep(0)
        assert bulkhead.waiting == 2
        bulkhead._release()  # hands the permit to `second` and schedules its wake-up...
        second.cancel()  # ...but `second` is cancelled before it can resume
        with pytest.raises(asyncio.CancelledError):
            await second
        assert await third == "done"

    asyncio.run(scenario())
    assert (bulkhead.active, bulkhead.waiting) == (0, 0)


def test_sync_and_async_callers_share_one_bulkhead() -> None:
    """A thread holding the only permit makes a coroutine caller wait (or be rejected)."""
    bulkhead = Bulkhead(1)
    held = Held(bulkhead)
    held.start(0)
    assert held.inside.acquire(timeout=10)

    @bulkhead
    async def other() -> str:
        return "ran"

    with pytest.raises(BulkheadFullError):
        asyncio.run(other())
    held.finish()
    assert asyncio.run(other()) == "ran"


@pytest.mark.parametrize(
    ("args", "kwargs", "name"),
    [
        ((0,), {}, "max_concurrent"),
        ((1,), {"max_waiting": -1}, "max_waiting"),
        ((1,), {"max_waiting": 1, "max_wait": -1.0}, "max_wait"),
        ((1,), {"max_waiting": 1, "max_wait": 0.0}, "max_wait"),
        ((1,), {"max_waiting": 0, "max_wait": 1.0}, "max_wait"),
    ],
)
def test_bad_configuration_names_the_parameter(
    args: tuple[int], kwargs: dict[str, float], name: str
) -> None:
    """Invalid settings fail at construction with a ValueError naming the parameter."""
    with pytest.raises(ValueError, match=name):
        Bulkhead(*args, **kwargs)  # type: ignore[arg-type]


def test_an_async_waiter_whose_wait_runs_out_is_rejected() -> None:
    """A queued coroutine that gets no permit within max_wait raises BulkheadFullError."""
    bulkhead = Bulkhead(1, max_waiting=1, max_wait=0.05)

    async def scenario() -> None:
        @bulkhead
        async def work() -> str:
            return "done"

        assert bulkhead._try_acquire()  # the test holds the only permit
        with pytest.raises(BulkheadFullError):
            await work()
        assert bulkhead.waiting == 0
        bulkhead._release()
        assert await work() == "done"

    asyncio.run(scenario())
    assert (bulkhead.active, bulkhead.waiting) == (0, 0)
