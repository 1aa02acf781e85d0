"""Bulkhead: concurrency limit, bounded FIFO queue, and permits released on every path."""

from __future__ import annotations

import asyncio
import sys
import threading
import types
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, nullcontext

import anyio
import anyio.lowlevel
import pytest
import trio

import resilience._bulkhead as bulkhead_module
from resilience import Bulkhead, BulkheadFullError, BulkheadRejected, Deadline, Policy
from resilience._clock import SYSTEM_CLOCK, Clock
from resilience.testing import EventRecorder, FakeClock
from tests.conftest import Colour, Script, wait_until

# Cancellation counts (Task.cancelling/uncancel) are new in Python 3.11: before, a cancellation
# from outside that races our own cannot be told apart.
needs_cancellation_counts = pytest.mark.skipif(
    sys.version_info < (3, 11), reason="Task.cancelling() is new in Python 3.11"
)

WAIT = 10.0  # the bound on every synchronisation wait: a bug fails the test instead of hanging


class Held:
    """Threads that enter a guarded function and stay inside until each is let go."""

    def __init__(self, bulkhead: Bulkhead) -> None:
        self.inside = threading.Semaphore(0)
        self.lock = threading.Lock()
        self.done = False
        self.gates: dict[int, threading.Event] = {}
        self.order: list[int] = []
        self.running = 0
        self.peak = 0
        self.errors: dict[int, BaseException] = {}

        @bulkhead
        def work(n: int) -> None:
            with self.lock:
                self.order.append(n)
                self.running += 1
                self.peak = max(self.peak, self.running)
            self.inside.release()
            try:
                assert self.gate(n).wait(WAIT)
            finally:
                with self.lock:
                    self.running -= 1

        self.work = work
        self.threads: list[threading.Thread] = []

    def gate(self, n: int) -> threading.Event:
        with self.lock:
            gate = self.gates.setdefault(n, threading.Event())
            if self.done:
                gate.set()
            return gate

    def start(self, n: int) -> None:
        """Call ``work(n)`` on a new thread."""

        def run() -> None:
            try:
                self.work(n)
            except BaseException as exc:
                self.errors[n] = exc

        thread = threading.Thread(target=run, daemon=True)
        self.threads.append(thread)
        thread.start()

    def enter(self, n: int) -> None:
        """Start ``work(n)`` and wait until it is inside the guarded function."""
        self.start(n)
        assert self.inside.acquire(timeout=WAIT), f"call {n} never got in"

    def let_go(self, n: int) -> None:
        self.gate(n).set()

    def finish(self) -> None:
        """Let every call go, now and later, and wait for the threads to end."""
        with self.lock:
            self.done = True
            for gate in self.gates.values():
                gate.set()
        for thread in self.threads:
            thread.join(WAIT)
            assert not thread.is_alive(), "a caller is stuck"


async def async_wait_until(condition: Callable[[], bool], what: str) -> None:
    """Yield to the loop, asyncio's or trio's, (bounded) until ``condition()`` holds."""
    for _ in range(10_000):
        if condition():
            return
        await anyio.lowlevel.checkpoint()
    raise AssertionError(f"timed out waiting for {what}")


def outcome_in_thread(call: Callable[[], object], held: Held) -> BaseException | object:
    """Run ``call`` on a thread; let ``held`` go only after it ended (or the bound ran out)."""
    outcome: list[BaseException | object] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:
            outcome.append(exc)

    caller = threading.Thread(target=run, daemon=True)
    caller.start()
    caller.join(WAIT)
    finished = not caller.is_alive()
    held.finish()
    caller.join(WAIT)
    assert finished, "the call did not end in time"
    return outcome[0]


class Queue:
    """A policy with a queue (Bulkhead or AdaptiveConcurrency) whose only slot the test holds,
    seen the same way: ``take``/``free`` the slot, ``counts`` = (slots held, calls queued)."""

    def __init__(
        self,
        policy: Policy,
        error: type[Exception],
        counts: Callable[[], tuple[int, int]],
        take: Callable[[], object],
        free: Callable[[], None],
    ) -> None:
        self.policy, self.error, self.counts, self.free = policy, error, counts, free
        assert take(), "the test takes the only slot"


def bulkhead_queue(max_wait: float | None, clock: Clock | None) -> Queue:
    bulkhead = Bulkhead(1, max_waiting=1, max_wait=max_wait, clock=clock)
    return Queue(
        bulkhead,
        BulkheadFullError,
        lambda: (bulkhead.active, bulkhead.waiting),
        bulkhead._try_acquire,
        bulkhead._release,
    )


class Caller:
    """One call through ``queue``'s policy in ``colour``, on a thread of its own (an async colour
    runs its own event loop there), inside ``around`` (a ``Deadline`` block) if given, so that
    the test's thread drives the clock and frees the slot."""

    def __init__(
        self,
        colour: Colour,
        queue: Queue,
        around: Callable[[], AbstractContextManager[object]] = nullcontext,
    ) -> None:
        self.behaviour = Script(["ran"])
        call = colour.wrap(queue.policy, self.behaviour)
        self.outcome: list[object] = []

        def run() -> None:
            try:
                with around():
                    self.outcome.append(call())
            except BaseException as exc:
                self.outcome.append(exc)

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def result(self) -> object:
        """The call's return value or error, once it ended (within the bound)."""
        self.thread.join(WAIT)
        assert not self.thread.is_alive(), "the call did not end"
        return self.outcome[0]


def refused_exactly_when_max_wait_passes(queue: Queue, colour: Colour, clock: FakeClock) -> None:
    """A queued call is refused when the fake clock passes ``max_wait`` (5 s), not before, and
    without waiting in real time; its timer is gone and no slot changed hands."""
    caller = Caller(colour, queue)
    wait_until(lambda: clock.pending_timers == [1005.0], "the waiter's timer")
    assert queue.counts() == (1, 1)
    clock.advance(4.75)
    assert clock.pending_timers == [1005.0]
    assert queue.counts() == (1, 1) and caller.thread.is_alive()
    clock.advance(0.25)
    assert isinstance(caller.result(), queue.error)
    assert caller.behaviour.calls == 0
    assert clock.pending_timers == []
    assert queue.counts() == (1, 0)  # the test's slot, untouched
    queue.free()
    assert queue.counts() == (0, 0)


def granted_before_max_wait_cancels_the_timer(
    queue: Queue, colour: Colour, clock: FakeClock
) -> None:
    """A slot freed before ``max_wait`` passes goes to the waiter, which runs and calls its
    timer off: advancing past ``max_wait`` afterwards changes nothing."""
    caller = Caller(colour, queue)
    wait_until(lambda: clock.pending_timers == [1005.0], "the waiter's timer")
    clock.advance(4.75)
    queue.free()
    assert caller.result() == "ran"
    assert clock.pending_timers == []
    assert queue.counts() == (0, 0)
    clock.advance(10.0)
    assert queue.counts() == (0, 0)


def cancelled_waiter_cancels_the_timer(
    queue: Queue, async_colour: Colour, clock: FakeClock
) -> None:
    """A queued coroutine cancelled before ``max_wait`` leaves the queue and calls its timer
    off; the slot stays with its holder."""
    behaviour = Script(["ran"])
    call = queue.policy(_coroutine_of(behaviour))

    async def scenario() -> None:
        scope = anyio.CancelScope()

        async def queued() -> None:
            with scope:
                await call()

        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as group:
                group.start_soon(queued)
                await async_wait_until(lambda: clock.pending_timers == [1005.0], "the timer")
                scope.cancel()
                await async_wait_until(lambda: queue.counts() == (1, 0), "the queue to empty")

    async_colour.run(scenario)
    assert behaviour.calls == 0
    assert clock.pending_timers == []
    assert queue.counts() == (1, 0)
    queue.free()
    assert queue.counts() == (0, 0)


def deadline_ends_the_wait_first(queue: Queue, colour: Colour, clock: FakeClock) -> None:
    """Inside a deadline 2 s away on the same clock, a wait of up to 5 s gets one timer, for the
    deadline, and the call is refused when the clock passes it."""
    caller = Caller(colour, queue, lambda: Deadline(2.0, clock=clock))
    wait_until(lambda: clock.pending_timers == [1002.0], "one timer, at the deadline")
    clock.advance(1.75)
    assert queue.counts() == (1, 1) and caller.thread.is_alive()
    clock.advance(0.25)
    assert isinstance(caller.result(), queue.error)
    assert caller.behaviour.calls == 0
    assert clock.pending_timers == []
    assert queue.counts() == (1, 0)
    queue.free()


def _coroutine_of(behaviour: Callable[[], object]) -> Callable[[], Awaitable[object]]:
    async def run() -> object:
        await anyio.lowlevel.checkpoint()
        return behaviour()

    return run


# -- the limit ---------------------------------------------------------------------------------


def test_threads_never_exceed_max_concurrent() -> None:
    """With five threads blocked inside, only max_concurrent run; the others queue."""
    bulkhead = Bulkhead(2, max_waiting=3, max_wait=WAIT)
    held = Held(bulkhead)
    for n in range(5):
        held.start(n)
    for _ in range(2):
        assert held.inside.acquire(timeout=WAIT)
    wait_until(lambda: bulkhead.waiting == 3, "three queued callers")
    assert (bulkhead.active, held.running, held.peak) == (2, 2, 2)
    held.finish()
    assert sorted(held.order) == [0, 1, 2, 3, 4]
    assert held.peak == 2
    assert held.errors == {}
    assert (bulkhead.active, bulkhead.waiting) == (0, 0)


def test_tasks_never_exceed_max_concurrent(async_colour: Colour) -> None:
    """Coroutines blocked inside hold the permits; the rest queue and run as permits free up."""
    bulkhead = Bulkhead(2, max_waiting=4, max_wait=WAIT)
    done: list[int] = []

    async def scenario() -> None:
        gate = anyio.Event()
        running = peak = 0

        @bulkhead
        async def work(n: int) -> None:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            try:
                await gate.wait()
            finally:
                running -= 1
            done.append(n)

        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as group:
                for n in range(6):
                    group.start_soon(work, n)
                await async_wait_until(lambda: bulkhead.waiting == 4, "four queued tasks")
                assert (bulkhead.active, running) == (2, 2)
                gate.set()
        assert peak == 2

    async_colour.run(scenario)
    assert sorted(done) == list(range(6))
    assert (bulkhead.active, bulkhead.waiting) == (0, 0)


def test_full_bulkhead_rejects_at_once_without_calling(colour: Colour) -> None:
    """With every permit held by threads and no queue, a sync or async call is rejected unrun,
    without waiting for a permit."""
    bulkhead = Bulkhead(2, name="db")
    held = Held(bulkhead)
    held.enter(0)
    held.enter(1)
    behaviour = Script(["ran"])
    with EventRecorder() as recorder:
        error = outcome_in_thread(colour.wrap(bulkhead, behaviour), held)
    assert isinstance(error, BulkheadFullError)
    assert behaviour.calls == 0
    assert (error.name, error.max_concurrent) == ("db", 2)
    assert [(event.policy, event.max_concurrent) for event in recorder.of(BulkheadRejected)] == [
        ("db", 2)
    ]
    assert (bulkhead.active, bulkhead.waiting) == (0, 0)
    assert colour.wrap(bulkhead, behaviour)() == "ran"  # and free again afterwards


# -- the queue ---------------------------------------------------------------------------------


def test_queue_is_bounded() -> None:
    """Up to max_waiting calls queue; the next one is rejected at once, unrun."""
    bulkhead = Bulkhead(1, max_waiting=2, max_wait=WAIT)
    held = Held(bulkhead)
    held.enter(0)
    held.start(1)
    held.start(2)
    wait_until(lambda: bulkhead.waiting == 2, "two queued callers")
    with EventRecorder() as recorder, pytest.raises(BulkheadFullError):
        held.work(3)
    assert len(recorder.of(BulkheadRejected)) == 1
    assert bulkhead.waiting == 2
    held.finish()
    assert sorted(held.order) == [0, 1, 2]
    assert (bulkhead.active, bulkhead.waiting) == (0, 0)


def test_queued_threads_are_served_first_in_first_out() -> None:
    """Each released permit goes to the oldest waiting thread."""
    bulkhead = Bulkhead(1, max_waiting=3, max_wait=WAIT)
    held = Held(bulkhead)
    held.enter(0)
    for n, queued in [(3, 1), (1, 2), (2, 3)]:  # arrival order 3, 1, 2
        held.start(n)
        wait_until(lambda queued=queued: bulkhead.waiting == queued, f"{queued} queued")
    for holder, successor in [(0, 3), (3, 1), (1, 2)]:
        held.let_go(holder)
        assert held.inside.acquire(timeout=WAIT)
        assert held.order[-1] == successor
        assert bulkhead.active == 1
    held.finish()
    assert held.order == [0, 3, 1, 2]
    assert held.peak == 1
    assert (bulkhead.active, bulkhead.waiting) == (0, 0)


def test_queued_tasks_are_served_first_in_first_out(async_colour: Colour) -> None:
    """Each released permit goes to the oldest waiting coroutine."""
    bulkhead = Bulkhead(1, max_waiting=3, max_wait=WAIT)
    order: list[int] = []

    async def scenario() -> None:
        @bulkhead
        async def work(n: int) -> None:
            order.append(n)

        assert bulkhead._try_acquire()  # the test holds the only permit
        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as group:
                for queued, n in enumerate((2, 0, 1), start=1):
                    group.start_soon(work, n)
                    await async_wait_until(lambda q=queued: bulkhead.waiting == q, "queued")
                bulkhead._release()

    async_colour.run(scenario)
    assert order == [2, 0, 1]
    assert (bulkhead.active, bulkhead.waiting) == (0, 0)


# -- waiting on the clock ----------------------------------------------------------------------


def test_a_waiter_is_refused_exactly_when_the_clock_passes_max_wait(
    colour: Colour, clock: FakeClock
) -> None:
    """On a FakeClock a queued call is refused with BulkheadFullError, unrun, when the clock
    passes max_wait, and not before."""
    with EventRecorder() as recorder:
        refused_exactly_when_max_wait_passes(bulkhead_queue(5.0, clock), colour, clock)
    assert len(recorder.of(BulkheadRejected)) == 1


def test_a_waiter_granted_before_max_wait_runs_and_calls_its_timer_off(
    colour: Colour, clock: FakeClock
) -> None:
    """A permit freed before max_wait passes goes to the waiter; its timer is cancelled."""
    granted_before_max_wait_cancels_the_timer(bulkhead_queue(5.0, clock), colour, clock)


def test_a_cancelled_waiter_calls_its_timer_off_and_takes_no_permit(
    async_colour: Colour, clock: FakeClock
) -> None:
    """A queued coroutine cancelled (asyncio or trio) leaves the queue and cancels its timer."""
    cancelled_waiter_cancels_the_timer(bulkhead_queue(5.0, clock), async_colour, clock)


def test_a_waiter_never_waits_past_the_deadline(colour: Colour, clock: FakeClock) -> None:
    """A deadline that ends before max_wait ends the wait: refused when the clock passes it."""
    deadline_ends_the_wait_first(bulkhead_queue(5.0, clock), colour, clock)


@pytest.mark.parametrize("own_clock", ["fake", "system"])
def test_a_deadline_on_another_clock_ends_the_wait_on_that_clock(
    colour: Colour, clock: FakeClock, own_clock: str
) -> None:
    """The deadline's time is read and waited for on the deadline's own clock: advancing the
    bulkhead's clock to just before max_wait does not end the wait, advancing the deadline's
    does (also for a bulkhead on the system clock with no limit of its own)."""
    other = FakeClock(start=50.0)
    queue = bulkhead_queue(5.0, clock) if own_clock == "fake" else bulkhead_queue(None, None)
    caller = Caller(colour, queue, lambda: Deadline(2.0, clock=other))
    wait_until(lambda: other.pending_timers == [52.0], "the deadline's timer")
    if own_clock == "fake":
        assert clock.pending_timers == [1005.0]
        clock.advance(4.75)
    other.advance(1.75)
    assert queue.counts() == (1, 1) and caller.thread.is_alive()
    other.advance(0.25)
    assert isinstance(caller.result(), BulkheadFullError)
    assert clock.pending_timers == [] and other.pending_timers == []
    assert queue.counts() == (1, 0)
    queue.free()


def test_on_the_system_clock_a_waiter_is_refused_when_max_wait_runs_out(colour: Colour) -> None:
    """The default clock's path: the wait's own timeout (no timer), in real time."""
    queue = bulkhead_queue(0.01, None)
    assert isinstance(Caller(colour, queue).result(), BulkheadFullError)
    assert queue.counts() == (1, 0)
    queue.free()


def test_a_waiter_with_no_time_left_is_rejected_without_waiting(clock: FakeClock) -> None:
    """When the deadline has passed, a call finding the bulkhead full does not wait at all."""
    bulkhead = Bulkhead(1, max_waiting=1, max_wait=None)
    held = Held(bulkhead)
    held.enter(0)
    behaviour = Script(["ran"])

    @Deadline(1.0, clock=clock)
    def late() -> object:
        clock.advance(2.0)
        return bulkhead(behaviour)()

    assert isinstance(outcome_in_thread(late, held), BulkheadFullError)
    assert behaviour.calls == 0
    assert clock.pending_timers == []
    assert (bulkhead.active, bulkhead.waiting) == (0, 0)


# -- release on every path ---------------------------------------------------------------------


@pytest.mark.parametrize("ending", [None, ValueError, KeyboardInterrupt])
def test_permit_released_after_return_exception_and_base_exception(
    colour: Colour, ending: type[BaseException] | None
) -> None:
    """The permit comes back whether the call returns, raises, or is interrupted."""
    bulkhead = Bulkhead(1)
    seen: list[int] = []

    def behaviour() -> str:
        seen.append(bulkhead.active)
        if ending is not None:
            raise ending("stop")
        return "ok"

    call = colour.wrap(bulkhead, behaviour)
    for _ in range(3):
        if ending is None:
            assert call() == "ok"
        else:
            with pytest.raises(ending):
                call()
        assert (bulkhead.active, bulkhead.waiting) == (0, 0)
    assert seen == [1, 1, 1]  # the permit was held during each call


def test_permits_survive_cancellation_of_running_and_queued_tasks(async_colour: Colour) -> None:
    """Cancelling a running call or a queued one leaks nothing; the next waiter moves up."""
    bulkhead = Bulkhead(2, max_waiting=2, max_wait=WAIT)
    ended: dict[int, str] = {}

    async def scenario() -> None:
        gate = anyio.Event()
        scopes = [anyio.CancelScope() for _ in range(4)]

        @bulkhead
        async def work() -> None:
            await gate.wait()

        async def call(n: int) -> None:
            ended[n] = "cancelled"
            with scopes[n]:
                await work()
                ended[n] = "returned"

        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as group:
                for n in range(4):
                    group.start_soon(call, n)
                    await async_wait_until(lambda n=n: n in ended, f"call {n} to start")
                await async_wait_until(lambda: bulkhead.waiting == 2, "two queued tasks")
                assert bulkhead.active == 2
                scopes[0].cancel()  # a running call
                scopes[3].cancel()  # a queued call
                await async_wait_until(lambda: bulkhead.waiting == 0, "the queue to empty")
                await anyio.lowlevel.checkpoint()
                assert bulkhead.active == 2  # call 2 took call 0's permit; call 3 took none
                gate.set()

    async_colour.run(scenario)
    assert ended == {0: "cancelled", 1: "returned", 2: "returned", 3: "cancelled"}
    assert (bulkhead.active, bulkhead.waiting) == (0, 0)


def test_a_waiter_cancelled_just_after_being_granted_passes_the_permit_on() -> None:
    """asyncio: if a permit is handed to a waiter that is being cancelled, the next waiter gets
    it."""
    bulkhead = Bulkhead(1, max_waiting=2, max_wait=WAIT)

    async def scenario() -> None:
        @bulkhead
        async def work() -> str:
            return "done"

        assert bulkhead._try_acquire()  # the test holds the only permit
        second = asyncio.create_task(work())
        third = asyncio.create_task(work())
        await async_wait_until(lambda: bulkhead.waiting == 2, "two queued tasks")
        bulkhead._release()  # hands the permit to `second` and schedules its wake-up...
        second.cancel()  # ...but `second` is cancelled before it can resume
        with pytest.raises(asyncio.CancelledError):
            await second
        assert (bulkhead.active, bulkhead.waiting) == (1, 0)  # passed on to `third`
        assert await asyncio.wait_for(third, WAIT) == "done"

    asyncio.run(scenario())
    assert (bulkhead.active, bulkhead.waiting) == (0, 0)


def test_a_trio_waiter_cancelled_just_after_being_granted_passes_the_permit_on() -> None:
    """trio: a waiter cancelled after it was handed a permit, before its wake-up ran, passes
    the permit to the next waiter."""
    bulkhead = Bulkhead(1, max_waiting=2, max_wait=WAIT)
    results: list[str] = []

    async def scenario() -> None:
        @bulkhead
        async def work() -> str:
            return "done"

        async def call(scope: trio.CancelScope) -> None:
            with scope:
                results.append(await work())
                return
            results.append("cancelled")

        assert bulkhead._try_acquire()  # the test holds the only permit
        second, third = trio.CancelScope(), trio.CancelScope()
        with trio.fail_after(WAIT):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(call, second)
                nursery.start_soon(call, third)
                await async_wait_until(lambda: bulkhead.waiting == 2, "two queued tasks")
                bulkhead._release()  # hands the permit to `second`, its wake-up scheduled...
                second.cancel()  # ...but `second` is cancelled before it can run
        assert (bulkhead.active, bulkhead.waiting) == (0, 0)

    trio.run(scenario)
    assert results == ["cancelled", "done"]


@needs_cancellation_counts
def test_an_earlier_swallowed_cancellation_does_not_turn_a_time_out_into_one() -> None:
    """A task that once swallowed a cancellation still gets BulkheadFullError when its wait
    runs out, not a CancelledError."""
    clock = FakeClock()
    bulkhead = Bulkhead(1, max_waiting=1, max_wait=5.0, clock=clock)

    async def scenario() -> None:
        @bulkhead
        async def work() -> str:
            return "done"

        async def expire() -> None:
            await async_wait_until(lambda: clock.pending_timers == [5.0], "the waiter's timer")
            clock.advance(5.0)

        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            pass  # swallowed, as older code does, without uncancel()
        assert bulkhead._try_acquire()  # the test holds the only permit
        expiry = asyncio.create_task(expire())
        with pytest.raises(BulkheadFullError):
            await work()
        await expiry
        bulkhead._release()

    asyncio.run(scenario())
    assert (bulkhead.active, bulkhead.waiting) == (0, 0)


@pytest.mark.parametrize("granted", [False, True], ids=["queued", "just-granted"])
def test_an_interrupted_thread_waiter_leaks_nothing(
    monkeypatch: pytest.MonkeyPatch, granted: bool
) -> None:
    """A KeyboardInterrupt while a thread waits in the queue removes it from the queue, passes
    on a permit it was handed at that moment, and calls its timer off."""
    clock = FakeClock()
    bulkhead = Bulkhead(1, max_waiting=1, max_wait=WAIT, clock=clock)

    class InterruptedWait(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            if granted:
                bulkhead._release()  # the holder returns its permit: it goes to this waiter
            raise KeyboardInterrupt

    monkeypatch.setattr(bulkhead_module, "threading", types.SimpleNamespace(Event=InterruptedWait))
    behaviour = Script(["ran"])
    assert bulkhead._try_acquire()  # the test holds the only permit
    with pytest.raises(KeyboardInterrupt):
        bulkhead(behaviour)()
    assert behaviour.calls == 0
    assert bulkhead.waiting == 0
    assert clock.pending_timers == []
    if not granted:
        assert bulkhead.active == 1  # still the test's
        bulkhead._release()
    assert bulkhead.active == 0


# -- sync and async together -------------------------------------------------------------------


def test_a_thread_releasing_wakes_a_waiting_coroutine(async_colour: Colour) -> None:
    """A coroutine queued behind a thread gets the permit when the thread's call ends."""
    bulkhead = Bulkhead(1, max_waiting=1, max_wait=WAIT)
    held = Held(bulkhead)
    held.enter(0)
    results: list[str] = []

    @bulkhead
    async def other() -> None:
        results.append("ran")

    async def scenario() -> None:
        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as group:
                group.start_soon(other)
                await async_wait_until(lambda: bulkhead.waiting == 1, "the coroutine to queue")
                held.let_go(0)

    try:
        async_colour.run(scenario)
    finally:
        held.finish()
    assert results == ["ran"]
    assert (bulkhead.active, bulkhead.waiting) == (0, 0)


def test_a_coroutine_releasing_wakes_a_waiting_thread(async_colour: Colour) -> None:
    """A thread queued behind a coroutine gets the permit when the coroutine's call ends."""
    bulkhead = Bulkhead(1, max_waiting=1, max_wait=WAIT)
    held = Held(bulkhead)

    async def scenario() -> None:
        gate = anyio.Event()

        @bulkhead
        async def holder() -> None:
            await gate.wait()

        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as group:
                group.start_soon(holder)
                await async_wait_until(lambda: bulkhead.active == 1, "the coroutine to get in")
                held.start(1)
                await async_wait_until(lambda: bulkhead.waiting == 1, "the thread to queue")
                gate.set()

    async_colour.run(scenario)
    assert held.inside.acquire(timeout=WAIT)
    held.finish()
    assert held.order == [1]
    assert held.errors == {}
    assert (bulkhead.active, bulkhead.waiting) == (0, 0)


# -- configuration -----------------------------------------------------------------------------


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


def test_a_clock_that_is_not_a_clock_fails_at_construction() -> None:
    """``clock=`` takes a Clock or None; anything else is a TypeError naming the parameter."""
    with pytest.raises(TypeError, match="clock must be a Clock"):
        Bulkhead(1, clock=1000.0)  # type: ignore[arg-type]
    assert Bulkhead(1).clock is SYSTEM_CLOCK


def test_replace_keeps_the_clock_and_repr_is_unchanged(clock: FakeClock) -> None:
    """A copy from ``replace`` waits on the same clock unless told otherwise."""
    bulkhead = Bulkhead(2, max_waiting=3, max_wait=1.5, clock=clock, name="db")
    copy = bulkhead.replace(name="db[a]")
    assert copy.clock is clock and copy.name == "db[a]" and copy.max_wait == 1.5
    assert bulkhead.replace(clock=None).clock is SYSTEM_CLOCK
    assert repr(copy) == "Bulkhead(2, max_waiting=3, max_wait=1.5)"


def test_a_configured_bulkhead_takes_the_registrys_clock(clock: FakeClock) -> None:
    """``build_policy(..., clock=)`` (and so a Registry's clock) reaches a bulkhead's queue."""
    from resilience.config import build_policy

    bulkhead = build_policy(
        "bulkhead", {"max_concurrent": 2, "max_waiting": 1, "max_wait": "1s"}, clock=clock
    )
    assert isinstance(bulkhead, Bulkhead) and bulkhead.clock is clock
